//! Use cases: each composes a source, a sink and the engine into one thing a user asks for.
//! They return typed reports; printing them is the CLI's job.

pub mod archive;
pub mod bundle;
pub mod copy;
pub mod delta;
pub mod describe;
pub mod export;
pub mod import;
pub mod input;
pub mod inspect;
pub mod inventory;
pub mod publish;
pub mod pull;
pub mod push;
pub mod referrers;
pub mod serve;
pub mod signatures;
pub mod stream;
pub mod tags;
pub mod verify;

use crate::engine::Artifact;
use crate::model::annotations;
use crate::model::layout::LayoutIndex;

/// The top-level artifacts of a layout's `index.json`, with what ferry's annotations say of them.
pub fn artifacts_of_index(index: &LayoutIndex) -> Vec<Artifact> {
    index
        .manifests
        .iter()
        // A delta record is not an artifact (spec/archive.md DL-3).
        .filter(|descriptor| !delta::is_delta_entry(descriptor))
        .map(|descriptor| {
            let mut artifact = Artifact::new(descriptor.clone());
            let notes = &descriptor.annotations;
            artifact.ref_name = notes.get(annotations::REF_NAME).cloned();
            artifact.original = notes.get(annotations::ORIGINAL_REF).and_then(|text| text.parse().ok());
            artifact.is_root = notes.get(annotations::IS_ROOT).is_some_and(|v| v == "true");
            artifact.annotations = notes.clone();
            artifact
        })
        .collect()
}
