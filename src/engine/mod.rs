//! The engine: the only code that walks the image graph and moves bytes between stores.
//!
//! [`walk`] resolves everything reachable from a set of top-level artifacts (manifests, index
//! children, configs, layers, bundle lock entries recursively), deduplicated by digest, and
//! collects every problem instead of stopping at the first. [`build_plan`] turns the graph into
//! a [`Plan`](crate::store::Plan); [`transfer`] executes a plan from any source to any sink with
//! bounded workers, largest blobs first. Progress goes through [`Reporter`].

mod beside;
mod bundle;
pub mod layer;
mod plan;
mod pool;
mod report;
mod transfer;
mod walk;

pub use beside::MoreArtifacts;
pub use bundle::{BundleContent, LockEntry, is_bundle_config, read_bundle};
pub use plan::build_plan;
pub use pool::run_all;
pub use report::{Items, NoReport, Reporter};
pub use transfer::{TransferError, TransferOptions, TransferStats, transfer};
pub use walk::{Artifact, Graph, Problem, WalkOptions, walk, walk_with};
