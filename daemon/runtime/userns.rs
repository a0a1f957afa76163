//! User namespaces as runc makes them: the helper unshares the user namespace first, berthd
//! (root on the host) writes its uid and gid maps from outside, and every other namespace is
//! then created inside it, so the container's root owns them.
use std::{fs, io, path::Path};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

/// `linux.uidMappings` / `linux.gidMappings` as runc validates them: mappings need a user
/// namespace, and a new one needs mappings (both, or its files and processes would be left
/// unmapped) that map the container's root, who sets the container up. `Err` is (field, reason).
pub fn check(spec: &Spec) -> Result<(), (String, String)> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    let user = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == LinuxNamespaceType::User);
    let maps = [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ];
    for (field, map) in maps {
        let map = map.as_deref().unwrap_or_default();
        if let Some(index) = map.iter().position(|m| m.size() == 0) {
            return Err((format!("{field}[{index}].size"), "must not be 0".into()));
        }
        match user {
            None if !map.is_empty() => {
                return Err((
                    field.into(),
                    "mappings are given but linux.namespaces has no user namespace".into(),
                ))
            }
            Some(ns) if ns.path().is_none() && map.is_empty() => {
                return Err((
                    field.into(),
                    "a new user namespace needs uid and gid mappings".into(),
                ))
            }
            Some(ns) if ns.path().is_none() && host_id(map, 0).is_none() => {
                return Err((field.into(), "the container's id 0 is not mapped".into()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn host_id(map: &[LinuxIdMapping], id: u32) -> Option<u32> {
    map.iter().find_map(|m| {
        let offset = id.checked_sub(m.container_id())?;
        (offset < m.size()).then(|| m.host_id() + offset)
    })
}

/// The host uid and gid of the container's root (0 and 0 without mappings): what runc
/// chowns the files the container's init must reach to.
pub fn host_root(spec: &Spec) -> (u32, u32) {
    let linux = spec.linux().as_ref();
    let root_of = |map: Option<&Vec<LinuxIdMapping>>| map.and_then(|m| host_id(m, 0)).unwrap_or(0);
    (
        root_of(linux.and_then(|l| l.uid_mappings().as_ref())),
        root_of(linux.and_then(|l| l.gid_mappings().as_ref())),
    )
}

/// The kernel's text for a map file: one "container host size" line per entry.
fn map_text(map: &[LinuxIdMapping]) -> String {
    map.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// The config's two mappings, each with its /proc file and its field's name.
pub fn maps(spec: &Spec) -> [(&'static str, &'static str, Option<&Vec<LinuxIdMapping>>); 2] {
    let linux = spec.linux().as_ref();
    [
        (
            "uid_map",
            "linux.uidMappings",
            linux.and_then(|l| l.uid_mappings().as_ref()),
        ),
        (
            "gid_map",
            "linux.gidMappings",
            linux.and_then(|l| l.gid_mappings().as_ref()),
        ),
    ]
}

/// Writes the process's uid and gid maps, each in one write as the kernel requires; on
/// failure, the field whose map the kernel refused. `setgroups` stays "allow", as runc
/// leaves it for a root runtime: the container's `additionalGids` need it.
pub fn write_maps(pid: i32, spec: &Spec) -> Result<(), (&'static str, io::Error)> {
    let proc = Path::new("/proc").join(pid.to_string());
    for (file, field, map) in maps(spec) {
        fs::write(
            proc.join(file),
            map_text(map.map(Vec::as_slice).unwrap_or_default()),
        )
        .map_err(|error| (field, error))?;
    }
    Ok(())
}

/// The map as /proc/<pid>/uid_map or gid_map shows it, for comparing a joined namespace's
/// mappings with the config's.
pub fn parse_map(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(|f| f.parse::<u32>().ok());
            Some((fields.next()??, fields.next()??, fields.next()??))
        })
        .collect()
}

/// Whether the config's mappings are those of the namespace (as parse_map gives them).
/// containerd and CRI-O name the namespace to join and repeat its mappings; runc accepts
/// that when they match.
pub fn same_map(config: &[LinuxIdMapping], actual: &[(u32, u32, u32)]) -> bool {
    let mut config: Vec<_> = config
        .iter()
        .map(|m| (m.container_id(), m.host_id(), m.size()))
        .collect();
    let mut actual = actual.to_vec();
    config.sort_unstable();
    actual.sort_unstable();
    config == actual
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(config: serde_json::Value) -> Spec {
        let mut base = serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"namespaces": [{"type": "mount"}]}
        });
        for (key, value) in config.as_object().unwrap() {
            base["linux"][key] = value.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn map(container: u32, host: u32, size: u32) -> serde_json::Value {
        serde_json::json!([{"containerID": container, "hostID": host, "size": size}])
    }

    #[test]
    fn mappings_and_a_user_namespace_go_together_as_runc_requires() {
        let new_userns = serde_json::json!([{"type": "mount"}, {"type": "user"}]);
        let field = |config| check(&spec(config)).err().map(|(field, _)| field);
        assert_eq!(
            field(serde_json::json!({"uidMappings": map(0, 100000, 65536)})),
            Some("linux.uidMappings".into())
        );
        assert_eq!(
            field(serde_json::json!({"namespaces": new_userns.clone()})),
            Some("linux.uidMappings".into())
        );
        assert_eq!(
            field(serde_json::json!({
                "namespaces": new_userns.clone(),
                "uidMappings": map(0, 100000, 65536),
            })),
            Some("linux.gidMappings".into())
        );
        assert_eq!(
            field(serde_json::json!({
                "namespaces": new_userns.clone(),
                "uidMappings": map(1, 100000, 65536),
                "gidMappings": map(0, 100000, 65536),
            })),
            Some("linux.uidMappings".into())
        );
        assert_eq!(
            field(serde_json::json!({
                "namespaces": new_userns.clone(),
                "uidMappings": map(0, 100000, 65536),
                "gidMappings": map(0, 100000, 0),
            })),
            Some("linux.gidMappings[0].size".into())
        );
        let good = spec(serde_json::json!({
            "namespaces": new_userns,
            "uidMappings": map(0, 100000, 65536),
            "gidMappings": map(0, 200000, 65536),
        }));
        assert_eq!(check(&good), Ok(()));
        assert_eq!(host_root(&good), (100000, 200000));
        // Joining by path needs no mappings of its own.
        let joined = spec(serde_json::json!({
            "namespaces": [{"type": "mount"}, {"type": "user", "path": "/proc/1/ns/user"}],
        }));
        assert_eq!(check(&joined), Ok(()));
        assert_eq!(host_root(&joined), (0, 0));
    }

    #[test]
    fn map_files_round_trip() {
        let good = spec(serde_json::json!({
            "namespaces": [{"type": "user"}],
            "uidMappings": [
                {"containerID": 0, "hostID": 100000, "size": 1000},
                {"containerID": 1000, "hostID": 5000, "size": 1},
            ],
        }));
        let uids = good
            .linux()
            .as_ref()
            .unwrap()
            .uid_mappings()
            .clone()
            .unwrap();
        assert_eq!(map_text(&uids), "0 100000 1000\n1000 5000 1\n");
        // The kernel pads the columns.
        let shown =
            parse_map("      1000       5000          1\n         0     100000       1000\n");
        assert!(same_map(&uids, &shown));
        assert!(!same_map(&uids, &shown[..1]));
        assert_eq!(host_id(&uids, 1000), Some(5000));
        assert_eq!(host_id(&uids, 1001), None);
    }
}
