//! The test image: an OCI image layout in a tar, as `ctr images import` reads it, built
//! from Debian's busybox-static. It holds `oci-layout`, `index.json` (whose manifest carries
//! the `io.containerd.image.name` annotation that names the image on import) and three
//! blobs: an uncompressed layer, the config and the manifest.
use std::path::Path;

use sha2::{Digest, Sha256};

/// The name the image is imported under.
pub const IMAGE: &str = "docker.io/library/berth-test:busybox";

/// The busybox applets the tests run, as links to /bin/busybox.
const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "echo", "true", "false", "ls", "hostname", "id", "kill", "tty", "stty",
    "readlink", "head", "wc", "env", "ip",
];

fn digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn layer() -> Vec<u8> {
    let mut layer = tar::Builder::new(Vec::new());
    let entry = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(0);
        header
    };
    for dir in ["bin", "dev", "etc", "proc", "sys", "tmp", "run"] {
        let mut header = entry(tar::EntryType::Directory, 0o755, 0);
        layer
            .append_data(&mut header, dir, std::io::empty())
            .unwrap();
    }
    let busybox = std::fs::read("/usr/bin/busybox").expect("busybox-static is installed");
    let mut header = entry(tar::EntryType::Regular, 0o755, busybox.len() as u64);
    layer
        .append_data(&mut header, "bin/busybox", busybox.as_slice())
        .unwrap();
    for applet in APPLETS {
        let mut header = entry(tar::EntryType::Symlink, 0o777, 0);
        layer
            .append_link(&mut header, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    layer.into_inner().unwrap()
}

/// Writes the image's OCI-layout tar to `path`.
pub fn write_oci_archive(path: &Path) {
    let layer = layer();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        // What a CRI pod's sandbox runs: it lives until it is stopped.
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sleep", "2147483647"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest(&layer),
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(&manifest),
            "size": manifest.len(),
            "annotations": {"io.containerd.image.name": IMAGE},
        }],
    }))
    .unwrap();
    let mut archive = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_mtime(0);
        archive.append_data(&mut header, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for blob in [&layer, &config, &manifest] {
        let name = format!("blobs/sha256/{}", &digest(blob)["sha256:".len()..]);
        add(&name, blob);
    }
    archive.finish().unwrap();
}
