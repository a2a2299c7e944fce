//! Dependencies point one way (spec/architecture.md):
//! model <- verify <- store <- engine <- ops <- cli. This test reads every `crate::` path in the
//! library's sources and fails when a module reaches up the stack, or when one store reaches
//! into another.

use std::fs;
use std::path::{Path, PathBuf};

const LAYERS: [&str; 5] = ["model", "verify", "store", "engine", "ops"];
/// The stores (implementations of Source/Sink); what they share lives beside them in `store`.
const STORES: [&str; 4] = ["layout_dir", "layout_tar", "imgpkg_tar", "registry"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| *layer == module)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a source file names through `crate::` (in `use` lines and paths),
/// including those inside `use crate::{a, b}` groups.
fn crate_modules(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in source.match_indices("crate::") {
        let rest = &source[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            found.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    found
}

fn store_of(path: &Path, root: &Path) -> Option<String> {
    let relative = path.strip_prefix(root.join("store")).ok()?;
    let first = relative.components().next()?.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
    STORES.contains(&first.as_str()).then_some(first)
}

#[test]
fn dependencies_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for layer in LAYERS {
        rust_files(&root.join(layer), &mut files);
    }
    assert!(files.len() > 10, "expected the library's modules under src/");
    let mut violations = Vec::new();
    for file in &files {
        let module = file.strip_prefix(&root).unwrap().components().next().unwrap().as_os_str().to_string_lossy();
        let own = layer_of(&module).unwrap();
        let source = fs::read_to_string(file).unwrap();
        for used in crate_modules(&source) {
            match layer_of(&used) {
                Some(layer) if layer > own => {
                    violations.push(format!("{}: {module} must not use crate::{used}", file.display()))
                }
                _ => {}
            }
        }
        if let Some(store) = store_of(file, &root) {
            for other in STORES {
                let named = [format!("store::{other}"), format!("super::super::{other}")];
                if other != store && named.iter().any(|path| source.contains(path.as_str())) {
                    violations.push(format!("{}: store {store} must not know store {other}", file.display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "layering violations:\n{}", violations.join("\n"));
}

#[test]
fn the_checker_sees_grouped_imports() {
    assert_eq!(crate_modules("use crate::{engine::x, model};\nlet a = crate::ops::y;"), ["engine", "model", "ops"]);
}

#[test]
fn every_module_opens_with_a_doc_comment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let undocumented: Vec<String> = files
        .iter()
        .filter(|file| !fs::read_to_string(file).unwrap().trim_start().starts_with("//!"))
        .map(|file| file.display().to_string())
        .collect();
    assert!(undocumented.is_empty(), "modules without a //! doc paragraph:\n{}", undocumented.join("\n"));
}
