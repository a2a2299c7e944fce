//! imgpkg bundles as the commands meet them, beyond reading one (which the engine owns):
//! building one from files ([`build`]), where a bundle's images live now and so where every
//! command reads them from ([`located`]), and the ImageLocations record that says so
//! ([`locations`]; spec/imgpkg.md).

pub mod build;
pub mod located;
pub mod locations;
