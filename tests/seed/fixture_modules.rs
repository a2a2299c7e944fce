// The fixture generator's modules (examples/fixtures/), compiled into a test crate so it can
// build bundles whose locks name the test registry. `include!` this at the crate root: the
// modules name each other through `crate::`.
#[allow(dead_code)]
#[path = "../../examples/fixtures/bundle.rs"]
mod bundle;
#[allow(dead_code)]
#[path = "../../examples/fixtures/layer_tar.rs"]
mod layer_tar;
#[allow(dead_code)]
#[path = "../../examples/fixtures/layout_dir.rs"]
mod layout_dir;
#[allow(dead_code)]
#[path = "../../examples/fixtures/layouts.rs"]
mod layouts;
#[allow(dead_code)]
#[path = "../../examples/fixtures/oci.rs"]
mod oci;
#[allow(dead_code)]
#[path = "../../examples/fixtures/prng.rs"]
mod prng;
