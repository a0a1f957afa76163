//! The layers of docs/design.md, checked against the code: within a crate, each module uses
//! only the modules listed before it in its table ("lowest layer first"), so no import cycle
//! can form and the design cannot drift from the tree. Across crates cargo already enforces
//! the direction. The benchmark scripts are held to the same rule: no import cycle.
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The module names of the design's table under `heading`, in order.
fn layer_order(heading: &str) -> Vec<String> {
    let design = fs::read_to_string(Path::new(REPO).join("docs/design.md")).unwrap();
    let table = design
        .split_once(heading)
        .unwrap_or_else(|| panic!("docs/design.md has no heading {heading:?}"))
        .1;
    table
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let first = line.trim_start_matches('|').split('|').next()?.trim();
            Some(first.strip_prefix('`')?.strip_suffix('`')?.to_owned())
        })
        .collect()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

fn without_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a file names through `crate::` paths, grouped imports included.
fn crate_modules_used(source: &str) -> BTreeSet<String> {
    let source = without_comments(source);
    let mut used = BTreeSet::new();
    let mut rest = source.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[i..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphabetic() || c == '_') => {
                        let name: String = group[i..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        used.insert(name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

/// Every use of a module listed at or after the user's own position, as "user -> used".
fn upward_uses(crate_dir: &str, heading: &str) -> (Vec<String>, Vec<String>) {
    let order = layer_order(heading);
    let rank: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i))
        .collect();
    let root = Path::new(REPO).join(crate_dir);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut unlisted = Vec::new();
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        // The crate roots (a library's lib.rs, a binary's main.rs) may name every module.
        if matches!(module.as_str(), "lib" | "main" | "Cargo.toml") {
            continue;
        }
        let Some(&own) = rank.get(module.as_str()) else {
            unlisted.push(module);
            continue;
        };
        for used in crate_modules_used(&fs::read_to_string(&file).unwrap()) {
            match rank.get(used.as_str()) {
                Some(&theirs) if theirs >= own && used != module => {
                    violations.push(format!("{} -> {used}", relative.display()))
                }
                _ => {}
            }
        }
    }
    unlisted.sort();
    unlisted.dedup();
    (unlisted, violations)
}

#[test]
fn runtime_modules_use_only_the_layers_below_them() {
    let (unlisted, violations) = upward_uses("daemon/runtime", "### The runtime");
    assert!(
        unlisted.is_empty(),
        "modules missing from docs/design.md: {unlisted:?}"
    );
    assert!(violations.is_empty(), "upward uses: {violations:#?}");
}

#[test]
fn server_modules_use_only_the_layers_below_them() {
    let (unlisted, violations) = upward_uses("daemon/server", "### The server");
    assert!(
        unlisted.is_empty(),
        "modules missing from docs/design.md: {unlisted:?}"
    );
    assert!(violations.is_empty(), "upward uses: {violations:#?}");
}

#[test]
fn shim_modules_use_only_the_layers_below_them() {
    let (unlisted, violations) = upward_uses("shim", "### The shim");
    assert!(
        unlisted.is_empty(),
        "modules missing from docs/design.md: {unlisted:?}"
    );
    assert!(violations.is_empty(), "upward uses: {violations:#?}");
}

#[test]
fn the_check_sees_grouped_and_plain_paths() {
    let used = crate_modules_used(
        "use crate::{\n    a::{B, C},\n    d,\n};\nfn f() { crate::e::g(); } // crate::comment",
    );
    assert_eq!(
        used,
        ["a", "d", "e"].map(String::from).into_iter().collect()
    );
}

#[test]
fn benchmark_scripts_import_no_cycle() {
    let bench = Path::new(REPO).join("bench");
    let scripts: BTreeMap<String, String> = fs::read_dir(&bench)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "py"))
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect();
    let imports = |source: &str| -> Vec<String> {
        source
            .lines()
            .filter_map(|line| {
                let line = line.trim_start();
                let module = line
                    .strip_prefix("from ")
                    .or_else(|| line.strip_prefix("import "))?;
                let name = module.split([' ', ',', '.']).next()?;
                scripts.contains_key(name).then(|| name.to_owned())
            })
            .collect()
    };
    // Depth-first from each script: reaching it again is a cycle.
    for start in scripts.keys() {
        let mut stack = imports(&scripts[start]);
        let mut seen = BTreeSet::new();
        while let Some(next) = stack.pop() {
            assert_ne!(
                &next, start,
                "bench/{start}.py imports itself through a cycle"
            );
            if seen.insert(next.clone()) {
                stack.extend(imports(&scripts[&next]));
            }
        }
    }
}
