//! containerd's container ids are unique only within a containerd namespace; berth's are
//! unique on the node. A berth id is derived from the pair, deterministically, so any shim,
//! `SHIM delete` included, finds the container again without asking anyone.
use std::collections::HashMap;

/// The label carrying the containerd namespace of a berth container.
pub const NAMESPACE_LABEL: &str = "containerd.io/namespace";
/// The label carrying the containerd container id.
pub const ID_LABEL: &str = "containerd.io/id";

/// `<namespace>+<id>`. containerd's identifiers (namespaces and ids alike) are letters and
/// digits joined by single `.`, `_` or `-`, at most 76 bytes, so they never hold a `+`, which a
/// berth id may: the pair maps to one id, and the id back to one pair. Exec ids follow the
/// same grammar and are used as they are.
pub fn berth_id(namespace: &str, id: &str) -> String {
    format!("{namespace}+{id}")
}

/// The labels of a berth container created for containerd.
pub fn labels(namespace: &str, id: &str) -> HashMap<String, String> {
    HashMap::from([
        (NAMESPACE_LABEL.to_owned(), namespace.to_owned()),
        (ID_LABEL.to_owned(), id.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_is_kept_apart() {
        assert_eq!(berth_id("default", "web"), "default+web");
        // Namespaces and ids holding the separators containerd allows stay distinct.
        assert_ne!(berth_id("a.b", "c"), berth_id("a", "b.c"));
        assert_eq!(berth_id("k8s.io", "0123abcd"), "k8s.io+0123abcd");
    }
}
