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
pub mod interrupt;
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

use std::collections::BTreeMap;

use crate::engine::Artifact;
use crate::model::Descriptor;
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
            // The annotations are kept once, as the artifact's (an index.json of many small
            // annotations is the largest thing a reader holds).
            let notes = &descriptor.annotations;
            let mut artifact = Artifact::new(Descriptor {
                media_type: descriptor.media_type.clone(),
                digest: descriptor.digest,
                size: descriptor.size,
                platform: descriptor.platform.clone(),
                artifact_type: descriptor.artifact_type.clone(),
                annotations: BTreeMap::new(),
            });
            artifact.ref_name = notes.get(annotations::REF_NAME).cloned();
            artifact.original = notes.get(annotations::ORIGINAL_REF).and_then(|text| text.parse().ok());
            artifact.is_root = notes.get(annotations::IS_ROOT).is_some_and(|v| v == "true");
            artifact.annotations = notes.clone();
            artifact
        })
        .collect()
}
