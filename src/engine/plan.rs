//! From a walked graph to a [`Plan`]: the archive's `index.json` with ferry's annotations
//! (spec/archive.md AR-6), and every manifest and blob once.

use std::collections::BTreeMap;

use super::walk::Graph;
use crate::model::annotations;
use crate::model::layout::LayoutIndex;
use crate::model::{Descriptor, RawManifest};
use crate::store::{Plan, PlannedBlob};

/// Builds the plan of everything in `graph`. Entries of `index.json` are sorted by name then
/// digest, so the same graph always gives the same bytes.
pub fn build_plan(graph: &Graph) -> Plan {
    let mut entries: Vec<Descriptor> = graph
        .artifacts
        .iter()
        .map(|artifact| {
            let mut descriptor = artifact.descriptor.clone();
            descriptor.platform = None;
            descriptor.artifact_type = None;
            let mut notes = artifact.annotations.clone();
            let name = artifact.ref_name.clone().unwrap_or_else(|| artifact.descriptor.digest.to_string());
            notes.insert(annotations::REF_NAME.into(), name);
            if let Some(original) = &artifact.original {
                notes.insert(annotations::ORIGINAL_REF.into(), original.to_string());
            }
            if artifact.is_bundle {
                notes.insert(annotations::IS_BUNDLE.into(), "true".into());
            }
            if artifact.is_root {
                notes.insert(annotations::IS_ROOT.into(), "true".into());
            } else {
                // Only a root is tagged (its ROOT_TAG comes with its annotations).
                notes.remove(annotations::ROOT_TAG);
            }
            descriptor.annotations = notes;
            descriptor
        })
        .collect();
    entries.sort_by(|a, b| {
        let name = |d: &Descriptor| d.annotations.get(annotations::REF_NAME).cloned();
        name(a).cmp(&name(b)).then(a.digest.cmp(&b.digest))
    });
    entries.dedup_by(|a, b| a.digest == b.digest && a.annotations == b.annotations);

    let mut index_annotations = BTreeMap::new();
    index_annotations.insert(annotations::FORMAT.to_string(), annotations::FORMAT_VERSION.to_string());
    if !graph.omitted.is_empty() {
        let omitted: Vec<String> = graph.omitted.keys().map(|digest| digest.to_string()).collect();
        index_annotations.insert(annotations::OMITTED_LAYERS.to_string(), omitted.join(","));
    }
    let manifests: Vec<RawManifest> = graph.manifests_children_first().into_iter().cloned().collect();
    let blobs = graph
        .blobs
        .values()
        .filter(|(descriptor, _)| !graph.manifests.contains_key(&descriptor.digest))
        .map(|(descriptor, role)| PlannedBlob { descriptor: descriptor.clone(), role: *role })
        .collect();
    Plan {
        index: LayoutIndex::new(entries, index_annotations),
        manifests,
        blobs,
        omitted: graph.omitted.values().cloned().collect(),
    }
}
