//! User namespaces with uidMappings and gidMappings, as Kubernetes user namespaces and
//! `podman --userns` send them: container ids 0-65535 on host ids 100000-165535. The bundle
//! and the state root are tempfile-made (0700, owned by the host's root), and so is the
//! busybox rootfs (0755, the host's root's): nothing the container's root could reach by
//! path on its own.
mod common;

use common::*;
use tonic::Code;

const HOST_ROOT: u32 = 100000;

/// A busybox bundle in a user namespace of its own. The rootfs is the host root's, so its
/// mount points exist already: the container's root could not make them.
fn userns_bundle(args: &[&str]) -> Bundle {
    let mut bundle = Bundle::busybox(args);
    std::fs::create_dir(bundle.path().join("rootfs/data")).unwrap();
    bundle.in_user_namespace(HOST_ROOT);
    bundle
}

/// The Uid: or Gid: line of /proc/<pid>/status, as the host sees it.
fn status_ids(pid: i32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .map(|id| id.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn the_init_is_the_mapped_root_in_a_user_namespace_of_its_own() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    let bundle = userns_bundle(&["sh", "-c", "echo uid=$(id -u) gid=$(id -g); exec sleep 100"]);
    let pid = daemon.run("c1", &bundle, Some(&output)).await;
    wait_output(&output, "uid=0 gid=0").await;
    // Real, effective, saved and file-system ids: all the mapped root's on the host.
    assert_eq!(status_ids(pid, "Uid:"), [HOST_ROOT; 4]);
    assert_eq!(status_ids(pid, "Gid:"), [HOST_ROOT; 4]);
    let user_ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    assert_ne!(user_ns(&pid.to_string()), user_ns("self"));
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        userns_map(&uid_map),
        [(0, HOST_ROOT, 65536)],
        "uid_map: {uid_map}"
    );
    let mut client = daemon.client().await;
    daemon.kill("c1", 9, false).await.unwrap();
    let exit = wait_exit_status(&mut client, "c1").await;
    assert_eq!(exit.signal, 9);
    daemon.delete("c1", false).await.unwrap();
    wait_gone(&[pid]).await;
    assert_nothing_left(&daemon, "c1");
}

fn userns_map(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .map(|line| {
            let f: Vec<u32> = line
                .split_whitespace()
                .map(|f| f.parse().unwrap())
                .collect();
            (f[0], f[1], f[2])
        })
        .collect()
}

#[tokio::test]
async fn the_exec_fifo_belongs_to_the_mapped_root_while_the_init_waits() {
    let daemon = Daemon::start().await;
    let bundle = userns_bundle(&["true"]);
    daemon.create("c1", &bundle, None).await.unwrap();
    let fifo = daemon.root.join("c1/exec.fifo");
    let meta = std::fs::metadata(&fifo).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (HOST_ROOT, HOST_ROOT));
    assert_eq!(meta.mode() & 0o777, 0o622);
    daemon.start_container("c1").await.unwrap();
    let mut client = daemon.client().await;
    assert_eq!(wait_exit_status(&mut client, "c1").await.code, 0);
    daemon.delete("c1", false).await.unwrap();
    assert_nothing_left(&daemon, "c1");
}

/// proc, devpts (gid=5, which the mapping covers), the default devices (the host's, bound),
/// and a bind mount whose source lies in the 0700 bundle directory.
#[tokio::test]
async fn proc_devpts_devices_and_binds_from_a_0700_bundle_work() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    let mut bundle = userns_bundle(&[
        "sh",
        "-c",
        "cat /proc/self/uid_map; ls -ln /dev/pts/ptmx; echo x > /dev/null && echo null-ok; \
         head -c 4 /dev/zero | wc -c; cat /data/note; touch /dev/shm/w && echo shm-ok",
    ]);
    let source = bundle.path().join("shared");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("note"), "from-the-bundle\n").unwrap();
    bundle.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/data", "type": "bind", "source": "shared", "options": ["rbind", "ro"]
        }));
    });
    daemon.run("c1", &bundle, Some(&output)).await;
    let mut client = daemon.client().await;
    let exit = wait_exit_status(&mut client, "c1").await;
    let seen = std::fs::read_to_string(&output).unwrap();
    assert_eq!(exit.code, 0, "{seen}");
    // Inside, the map reads from the container's side: 0 -> 100000.
    assert!(seen.contains("100000"), "{seen}");
    // devpts's ptmx belongs to root and gid 5... in the container.
    assert!(seen.contains("ptmx"), "{seen}");
    for expected in ["null-ok", "4", "from-the-bundle", "shm-ok"] {
        assert!(seen.contains(expected), "{expected}: {seen}");
    }
    daemon.delete("c1", false).await.unwrap();
    assert_nothing_left(&daemon, "c1");
}

/// Without a network namespace of its own the container cannot mount sysfs in its user
/// namespace: the host's /sys is bound, read-only as the config asks. The cgroup mount
/// (without a cgroup namespace) works too: binds of the container's cgroups on v1 and
/// hybrid hosts, the host's cgroup2 bound on v2.
#[tokio::test]
async fn sysfs_and_cgroups_without_network_or_cgroup_namespaces() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    let mut bundle = userns_bundle(&[
        "sh",
        "-c",
        "ls /sys/kernel > /dev/null && echo sys-ok; \
         if touch /sys/berth-probe; then echo sys-writable; fi; \
         ls /sys/fs/cgroup | wc -l",
    ]);
    bundle.without_namespace("network");
    daemon.run("c1", &bundle, Some(&output)).await;
    let mut client = daemon.client().await;
    let exit = wait_exit_status(&mut client, "c1").await;
    let seen = std::fs::read_to_string(&output).unwrap();
    assert_eq!(exit.code, 0, "{seen}");
    assert!(seen.contains("sys-ok"), "{seen}");
    assert!(!seen.contains("sys-writable"), "{seen}");
    let cgroup_entries: u32 = seen.lines().last().unwrap().trim().parse().unwrap();
    assert!(cgroup_entries > 0, "empty /sys/fs/cgroup: {seen}");
    daemon.delete("c1", false).await.unwrap();
    assert_nothing_left(&daemon, "c1");
}

#[tokio::test]
async fn mappings_and_user_namespaces_go_together_and_idmapped_mounts_are_refused() {
    let daemon = Daemon::start().await;
    let map = serde_json::json!([{"containerID": 0, "hostID": HOST_ROOT, "size": 65536}]);
    type Change<'a> = Box<dyn Fn(&mut serde_json::Value) + 'a>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "mappings-without-userns",
            Box::new(|c| {
                c["linux"]["uidMappings"] = map.clone();
                c["linux"]["gidMappings"] = map.clone();
            }),
            "linux.uidMappings",
        ),
        (
            "userns-without-gid-mappings",
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "user"}));
                c["linux"]["uidMappings"] = map.clone();
            }),
            "linux.gidMappings",
        ),
        (
            "root-unmapped",
            Box::new(|c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "user"}));
                c["linux"]["uidMappings"] =
                    serde_json::json!([{"containerID": 1, "hostID": HOST_ROOT, "size": 10}]);
                c["linux"]["gidMappings"] = map.clone();
            }),
            "linux.uidMappings",
        ),
        (
            "idmapped-mount",
            Box::new(|c| {
                let mounts = c["mounts"].as_array_mut().unwrap();
                mounts.push(serde_json::json!({
                    "destination": "/data", "type": "bind", "source": "/tmp",
                    "options": ["rbind"], "uidMappings": map, "gidMappings": map,
                }));
            }),
            "uidMappings",
        ),
    ];
    for (id, change, field) in cases {
        let mut bundle = Bundle::busybox(&["true"]);
        bundle.edit(|c| change(c));
        let status = daemon.create(id, &bundle, None).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{id}: {status:?}");
        assert!(status.message().contains(field), "{id}: {status:?}");
        assert_nothing_left(&daemon, id);
    }
}
