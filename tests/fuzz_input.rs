//! Property-based fuzzing of what callers hand berthd: container ids, bundle paths and
//! config.json documents. Each property drives one real daemon (started once per test,
//! outside the proptest loop) with generated inputs, and checks after every case that the
//! daemon still answers, that its answers are clear, and that nothing was left behind or
//! written where it should not be.
//!
//! The tests at the end are minimal reproductions of defects these properties (and the
//! exploration around them) found, kept as regression tests now that they are fixed.
mod common;

use std::{
    collections::BTreeSet,
    future::Future,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    time::Duration,
};

use berth::proto;
use common::*;
use proptest::{
    prelude::*,
    sample::select,
    test_runner::{Config, TestCaseError, TestCaseResult, TestRunner},
};
use serde_json::{json, Value};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// The longest any single call may take: a hang is a finding, not a stuck test run.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A runner with no regression files (failures are kept as named tests instead) and a
/// bounded shrink, since every shrink step costs real RPCs.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        max_shrink_time: 20_000,
        ..Config::default()
    })
}

/// Runs the property on every one of `examples` (the edge cases, always), then on `cases`
/// generated inputs; on failure, panics with the (minimal) input and the daemon's log.
fn check<S: Strategy>(
    daemon: &Daemon,
    examples: &[S::Value],
    cases: u32,
    strategy: &S,
    test: impl Fn(S::Value) -> TestCaseResult,
) where
    S::Value: Clone,
{
    let examples = examples.iter().try_for_each(|example| {
        test(example.clone())
            .map_err(|e| format!("Test failed: {e}.\nfailing example: {example:?}"))
    });
    let failure = examples.err().or_else(|| {
        runner(cases)
            .run(strategy, &test)
            .err()
            .map(|e| e.to_string())
    });
    if let Some(failure) = failure {
        let logs = daemon.logs();
        let mut tail: Vec<String> = logs
            .lines()
            .rev()
            .take(12)
            .map(|line| line.chars().take(400).collect())
            .collect();
        tail.reverse();
        panic!(
            "{failure}\n--- last lines of berthd's log ---\n{}",
            tail.join("\n")
        );
    }
}

/// Awaits one call, failing the case if it does not answer in time.
async fn bounded<T>(
    what: &str,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<Result<T, tonic::Status>, TestCaseError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| TestCaseError::fail(format!("{what}: no answer within {CALL_TIMEOUT:?}")))
}

/// An error a caller can act on: a deliberate status with a message, not a transport
/// failure or a crashed handler.
fn clear_error(what: &str, status: &tonic::Status) -> TestCaseResult {
    prop_assert!(
        !status.message().trim().is_empty(),
        "{what}: {:?} with an empty message",
        status.code()
    );
    let message = status.message();
    prop_assert!(
        !matches!(
            status.code(),
            Code::Unknown | Code::Unavailable | Code::Cancelled
        ) && !message.starts_with("h2 protocol error")
            && !message.contains("transport error"),
        "{what}: {:?} {:?} looks like a crash or a transport failure, not an answer",
        status.code(),
        message
    );
    Ok(())
}

/// The daemon process is alive and its health service says SERVING.
async fn assert_serving(daemon: &Daemon) {
    assert!(
        process_alive(daemon.pid() as i32),
        "berthd died:\n{}",
        daemon.logs()
    );
    let health = tokio::time::timeout(CALL_TIMEOUT, daemon.health(""))
        .await
        .expect("health check answers");
    assert_eq!(
        health.ok(),
        Some(ServingStatus::Serving),
        "berthd is no longer serving:\n{}",
        daemon.logs()
    );
    assert!(
        !daemon.logs().contains("panicked at"),
        "berthd logged a panic:\n{}",
        daemon.logs()
    );
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A directory holding one file: what a path escaping the state root or the container's
/// root would hit first. Returns its path.
fn plant_victim(parent: &Path) -> PathBuf {
    let victim = parent.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("file"), "untouched").unwrap();
    victim
}

fn victim_intact(victim: &Path) -> TestCaseResult {
    prop_assert_eq!(
        listing(victim),
        BTreeSet::from(["file".to_owned()]),
        "something was written into {}",
        victim.display()
    );
    prop_assert_eq!(
        std::fs::read_to_string(victim.join("file")).ok(),
        Some("untouched".to_owned()),
        "{}/file was changed",
        victim.display()
    );
    Ok(())
}

/// What a case could leave behind: the state root's entries, and every cgroup directory
/// under the daemon's cgroup parent (the parent included); and where the daemon's log
/// ended. Taken before and after each case, so a case that leaks (or makes the daemon
/// panic) is blamed alone, not every case after it.
#[derive(Debug)]
struct Leftovers {
    state: BTreeSet<String>,
    cgroups: BTreeSet<PathBuf>,
    log_len: usize,
}

impl Leftovers {
    fn of(daemon: &Daemon) -> Self {
        fn walk(dir: &Path, found: &mut BTreeSet<PathBuf>) {
            if !dir.is_dir() {
                return;
            }
            found.insert(dir.to_owned());
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), found);
                }
            }
        }
        let mut cgroups = BTreeSet::new();
        for parent in cgroup_dirs(&daemon.cgroup_parent) {
            walk(&parent, &mut cgroups);
        }
        Self {
            state: listing(&daemon.root),
            cgroups,
            log_len: daemon.logs().len(),
        }
    }

    /// Nothing appeared in the state root or among the cgroups since `self`, no hierarchy
    /// holds a cgroup for `id`, and the daemon logged no panic.
    fn unchanged(&self, daemon: &Daemon, id: &str) -> TestCaseResult {
        let now = Self::of(daemon);
        let logs = daemon.logs();
        let new = logs.get(self.log_len..).unwrap_or_default();
        prop_assert!(!new.contains("panicked at"), "berthd panicked:\n{}", new);
        prop_assert_eq!(
            &now.state,
            &self.state,
            "the state root changed (before, then after)"
        );
        prop_assert_eq!(
            &now.cgroups,
            &self.cgroups,
            "the cgroups changed (before, then after)"
        );
        for dir in daemon.container_cgroups(id) {
            prop_assert!(
                !dir.exists() || self.cgroups.contains(&dir),
                "cgroup {} was left behind",
                dir.display()
            );
        }
        Ok(())
    }
}

/// The host's mounts at or below any of `dirs`, as (mount point, file system type),
/// sorted: a leaked mount shows up as a difference. Whatever a container mounts lies in its
/// rootfs, so that is where a mount that propagates back shows up on the host; looking
/// only there keeps mounts other processes on the machine make meanwhile out of the
/// comparison.
fn host_mounts(dirs: &[&Path]) -> Vec<(String, String)> {
    let dirs: Vec<PathBuf> = dirs
        .iter()
        .map(|dir| std::fs::canonicalize(dir).unwrap())
        .collect();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut mounts: Vec<(String, String)> = mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            Some((fields[4].to_owned(), fields[separator + 1].to_owned()))
        })
        .filter(|(point, _)| dirs.iter().any(|dir| Path::new(point).starts_with(dir)))
        .collect();
    mounts.sort();
    mounts
}

// ---------------------------------------------------------------------------------------
// 1. Container ids
// ---------------------------------------------------------------------------------------

/// delete.md D1, written out independently of the daemon's own parser.
fn breaks_d1(id: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_+-.".contains(&b);
    !((1..=255).contains(&id.len()) && id.bytes().all(allowed) && id != "." && id != "..")
}

/// The classic troublemakers, each tried on every run.
fn edge_ids(victim: &Path) -> Vec<String> {
    let victim = victim.to_str().unwrap().to_owned();
    [
        "",
        "/",
        ".",
        "..",
        "...",
        "./",
        "../x",
        "../victim",
        "../victim/file",
        "../../victim",
        "a/b",
        "a/../..",
        "\0",
        "a\0b",
        "x\0/../victim",
        " ",
        "a b",
        "\t",
        "a\nb",
        "é",
        "日本",
        "💥",
        "x,y",
        "~",
        "~deleting.x",
        "*",
        "$(id)",
        "..a",
        "a..",
        "-",
        "+",
        "_",
        ".hidden",
    ]
    .into_iter()
    .map(String::from)
    .chain([
        victim.clone(),
        format!("{victim}/file"),
        format!("{victim}/new"),
        "x".repeat(255),
        "x".repeat(256),
        "x".repeat(4096),
        format!("{}é", "x".repeat(254)),
    ])
    .collect()
}

fn id_strategy(edge: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(edge),
        4 => "[A-Za-z0-9_+.-]{1,40}",
        2 => "[A-Za-z0-9_+.-]{240,260}",
        3 => any::<String>(),
        2 => "[a-z./\\\\ \0-]{0,12}",
        1 => "\\PC{200,600}",
    ]
}

async fn id_case(daemon: &Daemon, bundle: &Bundle, id: &str) -> TestCaseResult {
    let invalid = breaks_d1(id);
    let mut client = daemon.client().await;
    let request_id = || id.to_owned();
    // (rpc, answer, the code a valid id that names no container must get)
    let answers: Vec<(&str, Result<(), tonic::Status>, Option<Code>)> = vec![
        (
            "GetContainer",
            bounded(
                "get",
                client.get_container(proto::GetContainerRequest { id: request_id() }),
            )
            .await?
            .map(drop),
            Some(Code::NotFound),
        ),
        (
            "KillContainer",
            bounded(
                "kill",
                client.kill_container(proto::KillContainerRequest {
                    id: request_id(),
                    signal: 9,
                    all: false,
                }),
            )
            .await?
            .map(drop),
            Some(Code::NotFound),
        ),
        (
            "StartContainer",
            bounded(
                "start",
                client.start_container(proto::StartContainerRequest { id: request_id() }),
            )
            .await?
            .map(drop),
            Some(Code::NotFound),
        ),
        (
            "DeleteContainer",
            bounded(
                "delete",
                client.delete_container(proto::DeleteContainerRequest {
                    id: request_id(),
                    force: false,
                }),
            )
            .await?
            .map(drop),
            Some(Code::NotFound),
        ),
        (
            "DeleteContainer(force)",
            bounded(
                "delete --force",
                client.delete_container(proto::DeleteContainerRequest {
                    id: request_id(),
                    force: true,
                }),
            )
            .await?
            .map(drop),
            None,
        ),
    ];
    for (rpc, answer, unknown_id_code) in answers {
        if let Err(status) = &answer {
            clear_error(rpc, status)?;
        }
        if invalid {
            let status = answer.err();
            prop_assert_eq!(
                status.as_ref().map(|s| s.code()),
                Some(Code::InvalidArgument),
                "{} accepted an id that breaks D1: {:?}",
                rpc,
                status
            );
            let message = status.unwrap().message().to_owned();
            prop_assert!(
                message.contains("invalid container ID format"),
                "{rpc}: unclear message {message:?}"
            );
        } else {
            prop_assert_eq!(
                answer.as_ref().err().map(|s| s.code()),
                unknown_id_code,
                "{} on an unknown valid id: {:?}",
                rpc,
                answer
            );
        }
    }

    let created = bounded("create", daemon.create(id, bundle, None)).await?;
    if invalid {
        let status = created.err();
        prop_assert_eq!(
            status.as_ref().map(|s| s.code()),
            Some(Code::InvalidArgument),
            "CreateContainer accepted an id that breaks D1: {:?}",
            status
        );
        clear_error("CreateContainer", status.as_ref().unwrap())?;
        return Ok(());
    }
    // A valid id makes a real container, whose state directory is exactly <root>/<id>.
    let created = created.map_err(|e| TestCaseError::fail(format!("create {id:?}: {e:?}")))?;
    prop_assert_eq!(created.status(), proto::ContainerStatus::Created);
    prop_assert!(daemon.root.join(id).join("state.json").is_file());
    let got = bounded("get", daemon.get(id)).await?;
    prop_assert_eq!(got.map(|c| c.id).ok(), Some(id.to_owned()));
    let deleted = bounded("delete --force", daemon.delete(id, true)).await?;
    prop_assert!(
        deleted.is_ok(),
        "force-deleting the container {:?} that was just created: {:?}",
        id,
        deleted
    );
    prop_assert!(!daemon.root.join(id).exists());
    let gone = bounded("get", daemon.get(id)).await?;
    prop_assert_eq!(gone.err().map(|s| s.code()), Some(Code::NotFound));
    Ok(())
}

/// Every RPC that takes an id is where an attacker-controlled string first meets the file
/// system: `<root>/<id>` with an id of "../x" or "/etc" names a path outside the state
/// root. D1 promises the check happens before any file is touched, with or without force,
/// for every RPC. This throws arbitrary strings (the classic traversal forms, NUL, spaces,
/// unicode, 256+ bytes, and plenty of valid ids) at Get, Kill, Start, Delete (both ways) and
/// Create, and checks that each invalid id gets INVALID_ARGUMENT, each valid one behaves
/// like an ordinary unknown (or newly created, then deleted) container, every error has a
/// message, nothing next to the state root changes, and the daemon keeps serving.
#[test]
fn any_id_is_validated_before_anything_is_touched() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let daemon = rt.block_on(Daemon::start());
    let victim = plant_victim(daemon.dir.path());
    let around_root = listing(daemon.dir.path());
    let bundle = Bundle::busybox(&["true"]);
    let edge = edge_ids(&victim);
    check(&daemon, &edge, 64, &id_strategy(edge.clone()), |id| {
        let before = Leftovers::of(&daemon);
        rt.block_on(id_case(&daemon, &bundle, &id))?;
        before.unchanged(&daemon, &id)?;
        victim_intact(&victim)?;
        prop_assert_eq!(
            listing(daemon.dir.path()),
            around_root.clone(),
            "an entry appeared or vanished next to the state root"
        );
        Ok(())
    });
    rt.block_on(assert_serving(&daemon));
}

// ---------------------------------------------------------------------------------------
// 2. Bundle paths
// ---------------------------------------------------------------------------------------

/// Bundle-shaped things that are all unusable, each in its own way.
fn bundle_playground() -> tempfile::TempDir {
    let play = tempfile::tempdir().unwrap();
    let p = play.path();
    std::fs::write(p.join("file"), "not a bundle").unwrap();
    std::fs::create_dir(p.join("emptydir")).unwrap();
    std::fs::create_dir_all(p.join("cfgdir/config.json")).unwrap();
    std::fs::create_dir(p.join("badjson")).unwrap();
    std::fs::write(p.join("badjson/config.json"), "{").unwrap();
    std::fs::create_dir(p.join("emptyjson")).unwrap();
    std::fs::write(p.join("emptyjson/config.json"), "").unwrap();
    std::fs::create_dir(p.join("nullcfg")).unwrap();
    symlink("/dev/null", p.join("nullcfg/config.json")).unwrap();
    std::fs::create_dir(p.join("danglingcfg")).unwrap();
    symlink(
        "/nonexistent/config.json",
        p.join("danglingcfg/config.json"),
    )
    .unwrap();
    symlink("/dev/null", p.join("devnull")).unwrap();
    symlink("loop", p.join("loop")).unwrap();
    symlink("/nonexistent/berth-bundle", p.join("dangling")).unwrap();
    symlink("emptydir", p.join("tolink")).unwrap();
    // A well-formed config whose root is missing, and one whose root is a file.
    let mut spec = Bundle::busybox(&["true"]).config;
    for (name, root) in [("noroot", "missing-rootfs"), ("rootfile", "rootfs")] {
        std::fs::create_dir(p.join(name)).unwrap();
        spec["root"]["path"] = root.into();
        std::fs::write(
            p.join(name).join("config.json"),
            serde_json::to_vec(&spec).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(p.join("rootfile/rootfs"), "a file").unwrap();
    play
}

/// Paths every run tries: odd strings, special files, and every playground entry.
fn edge_bundle_paths(play: &Path) -> Vec<String> {
    let play = play.to_str().unwrap();
    [
        "",
        ".",
        "..",
        "/",
        "//",
        "/dev/null",
        "/dev/zero",
        "/dev",
        "/proc/self/cwd",
        "/proc/self/fd/0",
        "/etc/passwd",
        "/etc",
        "bundle",
        "relative/bundle",
        "./x",
        "../x",
        "~",
        "~/bundle",
        "/nonexistent",
        "/nonexistent/../..",
        "/tmp/../../..",
        "\0",
        "/tmp/\0x",
        "/tmp\n/x",
        " /tmp",
        "/tmp/ ",
        "C:\\bundle",
        "file:///tmp",
    ]
    .into_iter()
    .map(String::from)
    .chain([
        format!("/{}", "a".repeat(300)),
        format!("/{}", "a".repeat(5000)),
        format!("/tmp{}", "/a".repeat(3000)),
        format!("/tmp{}", "/..".repeat(200)),
    ])
    .chain(PLAYGROUND.iter().map(|entry| format!("{play}/{entry}")))
    .collect()
}

/// The playground's entries (and one that is missing).
const PLAYGROUND: [&str; 15] = [
    "",
    "file",
    "emptydir",
    "cfgdir",
    "badjson",
    "emptyjson",
    "nullcfg",
    "danglingcfg",
    "devnull",
    "loop",
    "dangling",
    "tolink",
    "noroot",
    "rootfile",
    "missing",
];

fn bundle_path_strategy(play: &Path, edge: Vec<String>) -> impl Strategy<Value = String> {
    let play = play.to_str().unwrap().to_owned();
    let entries = PLAYGROUND.to_vec();
    let suffixes = vec![
        "",
        "/",
        "/.",
        "/..",
        "/../..",
        "/x",
        "/config.json",
        "/config.json/",
        "//",
    ];
    let in_play = {
        let play = play.clone();
        (select(entries.clone()), select(suffixes.clone()))
            .prop_map(move |(entry, suffix)| format!("{play}/{entry}{suffix}"))
    };
    // The same places, as relative paths (from the daemon's working directory).
    let relative = (select(entries), select(suffixes)).prop_map(move |(entry, suffix)| {
        format!("{}/{entry}{suffix}", play.trim_start_matches('/'))
    });
    prop_oneof![
        2 => select(edge),
        5 => in_play,
        2 => relative,
        2 => any::<String>(),
        2 => "(/|\\.\\./|\\./|[a-z]{1,3}/){0,10}[a-z.]{0,4}",
    ]
}

async fn bundle_case(daemon: &Daemon, id: &str, bundle: &str) -> TestCaseResult {
    let mut client = daemon.client().await;
    let answer = bounded(
        "create",
        client.create_container(proto::CreateContainerRequest {
            id: id.into(),
            bundle: bundle.into(),
            stdout_path: String::new(),
            stderr_path: String::new(),
            ..Default::default()
        }),
    )
    .await?;
    let status = match answer {
        Ok(_) => {
            let _ = daemon.delete(id, true).await;
            return Err(TestCaseError::fail(format!(
                "a container was created from bundle {bundle:?}"
            )));
        }
        Err(status) => status,
    };
    clear_error("CreateContainer", &status)?;
    prop_assert!(
        matches!(status.code(), Code::InvalidArgument | Code::NotFound),
        "bundle {:?}: {:?} {:?}",
        bundle,
        status.code(),
        status.message()
    );
    prop_assert!(
        status.message().contains("bundle") || status.message().contains("config.json"),
        "bundle {:?}: the message does not say what is wrong: {:?}",
        bundle,
        status.message()
    );
    let got = bounded("get", daemon.get(id)).await?;
    prop_assert_eq!(
        got.err().map(|s| s.code()),
        Some(Code::NotFound),
        "a failed create left a container"
    );
    prop_assert!(
        !daemon.root.join(id).exists(),
        "a failed create left its state directory"
    );
    Ok(())
}

/// The bundle path is the other caller-controlled path in CreateContainer. Whatever it is
/// (relative, absolute, climbing with `..`, missing, a file, a device, a symlink loop, a
/// directory without a usable config.json, absurdly long, or not a path at all), the answer
/// must be an INVALID_ARGUMENT or NOT_FOUND that says what is wrong with the bundle, and a
/// refused create must leave nothing: no state directory, no cgroup, no registry entry.
#[test]
fn any_bundle_path_fails_cleanly() {
    const ID: &str = "fuzz-bundle";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let daemon = rt.block_on(Daemon::start());
    let play = bundle_playground();
    let edge = edge_bundle_paths(play.path());
    let strategy = bundle_path_strategy(play.path(), edge.clone());
    check(&daemon, &edge, 96, &strategy, |bundle| {
        let before = Leftovers::of(&daemon);
        rt.block_on(bundle_case(&daemon, ID, &bundle))?;
        before.unchanged(&daemon, ID)
    });
    rt.block_on(assert_serving(&daemon));
}

// ---------------------------------------------------------------------------------------
// 3. config.json documents
// ---------------------------------------------------------------------------------------

/// Strings that mean something to an OCI runtime, or to a path resolver. Deliberately
/// absent: names of programs (a hook could run them) and /proc/*/ns paths for mount or uts
/// namespaces (joining the host's would let the container set up, or rename, the host).
fn interesting_string() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => select(vec![
            "", "1.0.2", "1.0.2-dev", "1.", "2.0.0", "/", "/dev/null", "/nonexistent", "..",
            "../..", "../../../../etc", "/etc", "rootfs", "bind", "rbind", "tmpfs", "proc",
            "sysfs", "mount", "pid", "network", "ipc", "uts", "cgroup", "user", "time",
            "ro", "nosuid", "rshared", "0", "-1", "\0", "a\nb", "é", "💥", "a=b", "=",
        ])
        .prop_map(String::from),
        2 => "\\PC{0,24}",
        1 => "[a-z]{256,2048}",
    ]
}

fn json_key() -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        3 => select(vec![
            "ociVersion", "process", "args", "user", "uid", "gid", "additionalGids", "cwd",
            "env", "terminal", "rlimits", "type", "hard", "soft", "root", "path", "readonly",
            "mounts", "destination", "source", "options", "linux", "namespaces", "resources",
            "memory", "limit", "cpu", "shares", "pids", "devices", "allow", "access", "major",
            "minor", "hooks", "prestart", "createRuntime", "poststop", "timeout", "annotations",
            "hostname", "cgroupsPath", "maskedPaths", "readonlyPaths",
        ])
        .prop_map(String::from),
        1 => "\\PC{0,8}",
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        3 => select(vec![
            0i64, 1, -1, 2, 255, 65534, 65535, 65536, i32::MAX as i64, i32::MIN as i64,
            u32::MAX as i64, u32::MAX as i64 + 1, i64::MAX, i64::MIN,
        ])
        .prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        4 => interesting_string().prop_map(Value::from),
        1 => prop::collection::vec(any::<u32>().prop_map(Value::from), 1000..4000).prop_map(Value::Array),
        1 => prop::collection::vec(interesting_string().prop_map(Value::from), 500..2000).prop_map(Value::Array),
    ]
}

/// Any JSON value, nested at most 6 levels deep (deeper documents are `Doc::Deep`).
fn json_value() -> impl Strategy<Value = Value> + Clone {
    json_leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Numbers for fields that expect one: mostly ordinary, sometimes of any size and sign.
fn number() -> impl Strategy<Value = Value> + Clone {
    prop_oneof![
        6 => select(vec![
            json!(0), json!(1), json!(2), json!(10), json!(100), json!(1024), json!(4096),
            json!(1u64 << 20), json!(1u64 << 30),
        ]),
        2 => select(vec![
            json!(-1), json!(1u64 << 40), json!(i64::MAX), json!(i64::MIN), json!(u64::MAX),
            json!(u32::MAX), json!(1.5), json!(-1e300), json!(1e300),
        ]),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
    ]
}

/// Hooks of every kind, none of which names a real program.
fn hooks() -> impl Strategy<Value = Value> {
    let hook = (
        select(vec!["/nonexistent/hook", "/dev/null", "/", "", "relative/hook"]),
        prop::option::of(prop::collection::vec(interesting_string(), 0..3)),
        prop::option::of(prop::collection::vec(interesting_string(), 0..3)),
        prop::option::of(number()),
    )
        .prop_map(|(path, args, env, timeout)| {
            json!({ "path": path, "args": args, "env": env, "timeout": timeout })
        });
    prop::collection::vec(
        (
            select(vec![
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop",
            ]),
            prop::collection::vec(hook, 0..3),
        ),
        0..3,
    )
    .prop_map(|kinds| {
        Value::Object(
            kinds
                .into_iter()
                .map(|(kind, list)| (kind.to_owned(), Value::Array(list)))
                .collect(),
        )
    })
}

/// `linux.resources` shaped like the real thing, with values anywhere in range or out of it:
/// this is what reaches cgroups-rs.
fn resources() -> impl Strategy<Value = Value> {
    fn fields<const N: usize>(
        keys: [&'static str; N],
        value: impl Strategy<Value = Value> + Clone,
    ) -> impl Strategy<Value = Value> {
        prop::collection::vec((select(keys.to_vec()), value), 0..N + 1)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    }
    let cpu_list = select(vec![
        "0", "0-1", "", "1000000", "a", "0-100000", "-1", "0,0,0",
    ])
    .prop_map(Value::from);
    let memory = fields(
        [
            "limit",
            "reservation",
            "swap",
            "kernel",
            "kernelTCP",
            "swappiness",
            "disableOOMKiller",
            "useHierarchy",
        ],
        prop_oneof![number(), any::<bool>().prop_map(Value::from)],
    );
    let cpu = fields(
        [
            "shares",
            "quota",
            "burst",
            "period",
            "realtimeRuntime",
            "realtimePeriod",
            "cpus",
            "mems",
            "idle",
        ],
        prop_oneof![number(), cpu_list],
    );
    let pids = number().prop_map(|n| json!({ "limit": n }));
    let device_rule = (
        any::<bool>(),
        select(vec!["a", "b", "c", "p", "u", "x", ""]),
        prop::option::of(number()),
        prop::option::of(number()),
        select(vec!["rwm", "r", "", "xyz", "rrrr"]),
    )
        .prop_map(|(allow, kind, major, minor, access)| {
            json!({ "allow": allow, "type": kind, "major": major, "minor": minor, "access": access })
        });
    let devices = prop::collection::vec(device_rule, 0..4).prop_map(Value::Array);
    let throttle = (number(), number(), number())
        .prop_map(|(major, minor, rate)| json!({ "major": major, "minor": minor, "rate": rate }));
    let block_io = (
        prop::option::of(number()),
        prop::option::of(number()),
        prop::collection::vec(throttle, 0..3),
    )
        .prop_map(|(weight, leaf, devices)| {
            json!({ "weight": weight, "leafWeight": leaf, "throttleReadBpsDevice": devices })
        });
    let hugepages = prop::collection::vec(
        (select(vec!["2MB", "1GB", "huge", "", "64KB"]), number())
            .prop_map(|(size, limit)| json!({ "pageSize": size, "limit": limit })),
        0..3,
    )
    .prop_map(Value::Array);
    let unified = prop::collection::vec(
        (
            select(vec![
                "memory.max",
                "cpu.weight",
                "../../../tmp/berth-fuzz",
                "cgroup.procs",
                "",
                "/etc/passwd",
            ]),
            select(vec!["1", "max", "", "-1", "\n"]),
        ),
        0..3,
    )
    .prop_map(|kv| {
        Value::Object(
            kv.into_iter()
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .collect(),
        )
    });
    (
        prop::option::of(memory),
        prop::option::of(cpu),
        prop::option::of(pids),
        prop::option::of(devices),
        prop::option::of(block_io),
        prop::option::of(hugepages),
        prop::option::of(unified),
    )
        .prop_map(
            |(memory, cpu, pids, devices, block_io, hugepages, unified)| {
                let mut object = serde_json::Map::new();
                for (key, value) in [
                    ("memory", memory),
                    ("cpu", cpu),
                    ("pids", pids),
                    ("devices", devices),
                    ("blockIO", block_io),
                    ("hugepageLimits", hugepages),
                    ("unified", unified),
                ] {
                    if let Some(value) = value {
                        object.insert(key.into(), value);
                    }
                }
                Value::Object(object)
            },
        )
}

/// Namespace lists, usually with the mount namespace berth insists on, including joins by
/// path. Which host namespaces may be joined is limited by `defuse` below.
fn namespaces() -> impl Strategy<Value = Value> {
    let entry = (
        prop_oneof![
            6 => select(vec!["mount", "pid", "network", "ipc", "uts", "cgroup"]),
            1 => select(vec!["user", "time", "bogus", ""]),
        ],
        prop::option::weighted(
            0.3,
            select(vec![
                "/nonexistent",
                "/dev/null",
                "relative/ns",
                "",
                "/proc/self/ns/net",
                "/proc/self/ns/ipc",
                "/proc/self/ns/cgroup",
                "/proc/self/ns/pid",
            ]),
        ),
    )
        .prop_map(|(kind, path)| match path {
            Some(path) => json!({ "type": kind, "path": path }),
            None => json!({ "type": kind }),
        });
    (
        prop::bool::weighted(0.9),
        prop::collection::vec(entry, 0..6),
    )
        .prop_map(|(mount, rest)| {
            let first = mount.then(|| json!({ "type": "mount" }));
            Value::Array(first.into_iter().chain(rest).collect())
        })
}

/// Where a symlinked root.path points.
#[derive(Clone, Debug)]
enum RootTarget {
    /// An empty directory outside the bundle.
    Outside,
    /// The same, as a path relative to the bundle.
    OutsideRelative,
    Absolute(&'static str),
    Relative(&'static str),
    /// A symlink that points at itself.
    Loop,
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Sets the field at this JSON pointer (made if missing) to the value.
    Replace(&'static str, Value),
    /// Sets the field to a number literal JSON can spell but serde_json::Value cannot hold.
    RawNumber(&'static str, &'static str),
    AddMount(Value),
    RootSymlink(RootTarget),
    Namespaces(Value),
    Resources(Value),
    RootfsPropagation(&'static str),
    CgroupsPath(&'static str),
}

#[derive(Clone, Debug)]
enum Doc {
    /// Any JSON value as the whole of config.json.
    Whole(Value),
    /// Bytes that may not be JSON at all.
    Raw(Vec<u8>),
    /// The valid config, cut short.
    Truncated(prop::sample::Index),
    /// Arrays nested this deep as the value of a field of the valid config.
    Deep(&'static str, usize),
    /// The valid `runc spec` config with these changes.
    Mutated(Vec<Mutation>),
}

const FIELDS: [&str; 10] = [
    "/ociVersion",
    "/process",
    "/process/args",
    "/process/user/uid",
    "/root",
    "/root/path",
    "/mounts",
    "/linux/namespaces",
    "/linux/resources",
    "/hooks",
];

/// Mount entries aimed at escaping the container's root: destinations that climb with
/// `..`, name host paths, or go through symlinks planted in the rootfs.
fn mount_entry(victim: &Path, scratch: &Path) -> impl Strategy<Value = Value> {
    let victim = victim.to_str().unwrap().to_owned();
    let climb = format!("{}{}", "../".repeat(12), victim.trim_start_matches('/'));
    let destination = prop_oneof![
        3 => select(vec![
            "/../../../../tmp/berth-fuzz-escape".to_owned(),
            "../x".to_owned(),
            "a/../../b".to_owned(),
            "/proc/../../x".to_owned(),
            "/dev/../../../etc/berth-fuzz".to_owned(),
            "/etc".to_owned(),
            "/tmp/x".to_owned(),
            "/bin/true".to_owned(),
            "relative/x".to_owned(),
            "/evil/pwned".to_owned(),
            "/up/tmp/berth-fuzz".to_owned(),
            "/up/up/up/x".to_owned(),
            format!("{victim}/pwned"),
            format!("{climb}/pwned"),
            format!("/proc/../{climb}/pwned"),
        ]),
        1 => "(\\.\\./|/|[a-z]{1,3}/|\\./|evil/|up/){1,8}[a-z]{1,3}",
    ];
    let scratch = scratch.to_str().unwrap().to_owned();
    let source = select(vec![
        "/dev/null".to_owned(),
        "/nonexistent".to_owned(),
        "tmpfs".to_owned(),
        "rootfs/bin".to_owned(),
        "config.json".to_owned(),
        "../..".to_owned(),
        "".to_owned(),
        scratch,
    ]);
    // Only per-mount flags: a superblock flag on a shared file system (proc, sysfs) would
    // change the host's, which is the caller's doing, not the daemon's.
    let kind_and_options = prop_oneof![
        prop::collection::vec(
            select(vec!["bind", "rbind", "ro", "nosuid", "rshared", "rprivate"]),
            0..3
        )
        .prop_map(|options| ("bind", options)),
        prop::collection::vec(
            select(vec![
                "ro",
                "nosuid",
                "size=1k",
                "mode=777",
                "nonsense=1",
                "rslave"
            ]),
            0..3
        )
        .prop_map(|options| ("tmpfs", options)),
        (
            select(vec!["proc", "", "nonsense", "none"]),
            prop::collection::vec(select(vec!["nosuid", "nodev", "noexec", "defaults"]), 0..3)
        ),
    ];
    (destination, source, kind_and_options).prop_map(|(destination, source, (kind, options))| {
        json!({ "destination": destination, "type": kind, "source": source, "options": options })
    })
}

fn doc_strategy(victim: &Path, scratch: &Path) -> impl Strategy<Value = Doc> {
    let mutation = prop_oneof![
        3 => (select(FIELDS.to_vec()), json_value()).prop_map(|(f, v)| Mutation::Replace(f, v)),
        // The same fields, with values of the right type.
        3 => prop_oneof![
            interesting_string().prop_map(|v| Mutation::Replace("/ociVersion", v.into())),
            prop::collection::vec(interesting_string(), 0..4)
                .prop_map(|v| Mutation::Replace("/process/args", json!(v))),
            number().prop_map(|v| Mutation::Replace("/process/user/uid", v)),
            interesting_string().prop_map(|v| Mutation::Replace("/process/cwd", v.into())),
            interesting_string().prop_map(|v| Mutation::Replace("/root/path", v.into())),
            any::<bool>().prop_map(|v| Mutation::Replace("/root/readonly", v.into())),
            prop::collection::vec(mount_entry(victim, scratch), 0..3)
                .prop_map(|v| Mutation::Replace("/mounts", Value::Array(v))),
            hooks().prop_map(|v| Mutation::Replace("/hooks", v)),
        ],
        1 => (
            select(vec![
                "/process/user/uid",
                "/process/user/gid",
                "/process/rlimits/0/hard",
                "/linux/resources/memory/limit",
                "/linux/resources/pids/limit",
            ]),
            select(vec![
                "18446744073709551616",
                "-9223372036854775809",
                "100000000000000000000000000000",
                "1e400",
                "-1e400",
                "-0",
                "1.0",
                "4294967296",
            ]),
        )
            .prop_map(|(f, literal)| Mutation::RawNumber(f, literal)),
        3 => mount_entry(victim, scratch).prop_map(Mutation::AddMount),
        2 => select(vec![
            RootTarget::Outside,
            RootTarget::OutsideRelative,
            RootTarget::Absolute("/nonexistent"),
            RootTarget::Absolute("/dev/null"),
            RootTarget::Absolute("/etc/passwd"),
            RootTarget::Relative("rootfs"),
            RootTarget::Relative("missing"),
            RootTarget::Relative("rootfs/bin/busybox"),
            RootTarget::Loop,
        ])
        .prop_map(Mutation::RootSymlink),
        2 => namespaces().prop_map(Mutation::Namespaces),
        3 => resources().prop_map(Mutation::Resources),
        1 => select(vec!["shared", "rshared", "private", "slave", "unbindable", "bogus", ""])
            .prop_map(Mutation::RootfsPropagation),
        1 => select(vec!["sub/x", "x", "", "/", "..", "../escape", "a/../../b", "./x", "a//b"])
            .prop_map(Mutation::CgroupsPath),
    ];
    prop_oneof![
        2 => json_value().prop_map(Doc::Whole),
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Doc::Raw),
        1 => any::<prop::sample::Index>().prop_map(Doc::Truncated),
        1 => (select(vec!["", "/process", "/linux/resources", "/mounts", "/annotations"]), 1usize..400)
            .prop_map(|(field, depth)| Doc::Deep(field, depth)),
        8 => prop::collection::vec(mutation, 1..3).prop_map(Doc::Mutated),
    ]
}

/// Where a case's bundle lives, and the directories it may legitimately write into.
struct ConfigEnv {
    bundle: Bundle,
    /// The valid config the mutations start from.
    base: Value,
    rootfs: PathBuf,
    /// Outside the bundle, and fair game: bind sources, a symlinked root's target.
    scratch: tempfile::TempDir,
}

impl ConfigEnv {
    fn new(victim: &Path) -> Self {
        let bundle = Bundle::busybox(&["true"]);
        let rootfs = bundle.path().join("rootfs");
        // Symlinks a mount destination may go through: one to a host directory, one up.
        symlink(victim, rootfs.join("evil")).unwrap();
        symlink("../../../..", rootfs.join("up")).unwrap();
        let scratch = tempfile::tempdir().unwrap();
        std::fs::create_dir(scratch.path().join("outside-root")).unwrap();
        Self {
            base: bundle.config.clone(),
            bundle,
            rootfs,
            scratch,
        }
    }

    fn allowed(&self, path: &Path) -> bool {
        [self.bundle.path(), self.scratch.path()]
            .iter()
            .any(|dir| path.starts_with(std::fs::canonicalize(dir).unwrap()))
    }

    /// True when `raw`, resolved from the bundle, is an existing directory that is neither
    /// in the bundle nor in the scratch directory.
    fn escapes(&self, raw: &str) -> bool {
        if raw.contains('\0') {
            return false;
        }
        match std::fs::canonicalize(self.bundle.path().join(raw)) {
            Ok(path) => path.is_dir() && !self.allowed(&path),
            Err(_) => false,
        }
    }
}

/// Sets the field at `pointer`, making missing objects on the way; does nothing when the
/// way is blocked by a value that is not an object (an earlier mutation replaced it).
fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let parts: Vec<&str> = pointer.split('/').skip(1).collect();
    let Some((last, path)) = parts.split_last() else {
        *target = value;
        return;
    };
    let mut current = target;
    for part in path {
        current = match current {
            Value::Object(map) => map.entry(part.to_string()).or_insert_with(|| json!({})),
            Value::Array(items) => {
                match part.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    Some(item) => item,
                    None => return,
                }
            }
            _ => return,
        };
    }
    match current {
        Value::Object(map) => {
            map.insert(last.to_string(), value);
        }
        Value::Array(items) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = value;
            }
        }
        _ => {}
    }
}

/// Depth of a mount destination once `..` and the rootfs's planted `up` link are applied:
/// 0 means the container's root itself.
fn destination_depth(destination: &str) -> usize {
    let mut depth = 0usize;
    for component in Path::new(destination).components() {
        match component {
            std::path::Component::Normal(name) if name == "up" => depth = 0,
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::ParentDir => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth
}

/// The test's own safety net, not a property: keeps generated configs from doing what the
/// caller is allowed to ask for but this host must not get. A root, or a bind mount's
/// source, in a host directory outside the bundle and the scratch directory (the daemon
/// would legitimately create mount points in it); a join of a mount or uts namespace by
/// path (the host's would be set up or renamed); a bind mount over the container's root
/// (device nodes would then be made in its source); a superblock `remount`; a hook that
/// names a real program.
fn defuse(config: &mut Value, env: &ConfigEnv) {
    if let Some(path) = config.pointer("/root/path").and_then(Value::as_str) {
        if env.escapes(path) {
            *config.pointer_mut("/root/path").unwrap() = env.rootfs.to_str().unwrap().into();
        }
    }
    if let Some(Value::Array(list)) = config.pointer_mut("/linux/namespaces") {
        for entry in list.iter_mut().filter_map(Value::as_object_mut) {
            let joinable = matches!(
                entry.get("type").and_then(Value::as_str),
                Some("network" | "ipc" | "cgroup" | "pid")
            );
            if !joinable {
                entry.remove("path");
            }
        }
    }
    if let Some(Value::Object(hooks)) = config.get_mut("hooks") {
        for entry in hooks
            .values_mut()
            .filter_map(Value::as_array_mut)
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            let Some(path) = entry.get("path").and_then(Value::as_str) else {
                continue;
            };
            let runnable = !Path::new(path).is_absolute()
                || std::fs::metadata(path).is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && m.permissions().mode() & 0o111 != 0
                });
            if runnable {
                entry.insert("path".into(), "/nonexistent/berth-fuzz-hook".into());
            }
        }
    }
    if let Some(Value::Array(mounts)) = config.get_mut("mounts") {
        mounts.retain_mut(|mount| {
            let Some(mount) = mount.as_object_mut() else {
                return true;
            };
            if let Some(Value::Array(options)) = mount.get_mut("options") {
                options.retain(|o| o.as_str().is_none_or(|o| !o.contains("remount")));
            }
            let options = mount.get("options").and_then(Value::as_array);
            let is_bind = mount.get("type").and_then(Value::as_str) == Some("bind")
                || options.is_some_and(|o| {
                    o.iter()
                        .any(|o| matches!(o.as_str(), Some("bind" | "rbind")))
                });
            if !is_bind {
                return true;
            }
            if let Some(source) = mount.get("source").and_then(Value::as_str) {
                if env.escapes(source) {
                    let scratch = env.scratch.path().to_str().unwrap();
                    mount.insert("source".into(), scratch.into());
                }
            }
            mount
                .get("destination")
                .and_then(Value::as_str)
                .is_none_or(|d| destination_depth(d) > 0)
        });
    }
}

/// config.json's bytes for `doc`; builds whatever symlink the doc asks for in the bundle.
fn render(doc: &Doc, env: &ConfigEnv) -> Vec<u8> {
    let bundle = env.bundle.path();
    let pretty = |config: &Value| serde_json::to_string_pretty(config).unwrap();
    let splice = |config: &mut Value, pointer: &str, literal: String, splices: &mut Vec<_>| {
        let placeholder = format!("@@berth-fuzz-splice-{}@@", splices.len());
        set_pointer(config, pointer, placeholder.clone().into());
        splices.push((format!("\"{placeholder}\""), literal));
    };
    let with_splices = |config: &Value, splices: &[(String, String)]| {
        let mut text = pretty(config);
        for (placeholder, literal) in splices {
            text = text.replace(placeholder, literal);
        }
        text.into_bytes()
    };
    match doc {
        Doc::Whole(value) => {
            let mut value = value.clone();
            defuse(&mut value, env);
            pretty(&value).into_bytes()
        }
        Doc::Raw(bytes) => bytes.clone(),
        Doc::Truncated(cut) => {
            let text = pretty(&env.base).into_bytes();
            text[..cut.index(text.len())].to_vec()
        }
        Doc::Deep("", depth) => {
            format!("{}{}", "[".repeat(*depth), "]".repeat(*depth)).into_bytes()
        }
        Doc::Deep(field, depth) => {
            let mut config = env.base.clone();
            let mut splices = Vec::new();
            let nested = format!("{}{}", "[".repeat(*depth), "]".repeat(*depth));
            splice(&mut config, field, nested, &mut splices);
            with_splices(&config, &splices)
        }
        Doc::Mutated(mutations) => {
            let mut config = env.base.clone();
            let mut splices = Vec::new();
            let _ = std::fs::remove_file(bundle.join("rootlink"));
            for mutation in mutations {
                match mutation {
                    Mutation::Replace(field, value) => {
                        set_pointer(&mut config, field, value.clone())
                    }
                    Mutation::RawNumber(field, literal) => {
                        splice(&mut config, field, literal.to_string(), &mut splices)
                    }
                    Mutation::AddMount(mount) => match config.get_mut("mounts") {
                        Some(Value::Array(mounts)) => mounts.push(mount.clone()),
                        Some(_) => {}
                        None => set_pointer(&mut config, "/mounts", json!([mount])),
                    },
                    Mutation::RootSymlink(target) => {
                        let outside = env.scratch.path().join("outside-root");
                        let target = match target {
                            RootTarget::Outside => outside,
                            RootTarget::OutsideRelative => Path::new("..")
                                .join(env.scratch.path().file_name().unwrap())
                                .join("outside-root"),
                            RootTarget::Absolute(path) | RootTarget::Relative(path) => {
                                PathBuf::from(path)
                            }
                            RootTarget::Loop => PathBuf::from("rootlink"),
                        };
                        let _ = std::fs::remove_file(bundle.join("rootlink"));
                        symlink(&target, bundle.join("rootlink")).unwrap();
                        set_pointer(&mut config, "/root/path", "rootlink".into());
                    }
                    Mutation::Namespaces(list) => {
                        set_pointer(&mut config, "/linux/namespaces", list.clone())
                    }
                    Mutation::Resources(resources) => {
                        set_pointer(&mut config, "/linux/resources", resources.clone())
                    }
                    Mutation::RootfsPropagation(value) => {
                        set_pointer(&mut config, "/linux/rootfsPropagation", (*value).into())
                    }
                    Mutation::CgroupsPath(value) => {
                        set_pointer(&mut config, "/linux/cgroupsPath", (*value).into())
                    }
                }
            }
            defuse(&mut config, env);
            with_splices(&config, &splices)
        }
    }
}

async fn config_case(daemon: &Daemon, env: &ConfigEnv, id: &str, doc: &Doc) -> TestCaseResult {
    std::fs::write(env.bundle.path().join("config.json"), render(doc, env)).unwrap();
    let output = env.scratch.path().join("output");
    std::fs::write(&output, "").unwrap();
    let created = bounded(
        "create",
        daemon.create(id, &env.bundle, Some(output.to_str().unwrap())),
    )
    .await?;
    match created {
        Err(status) => clear_error("CreateContainer", &status)?,
        Ok(container) => {
            prop_assert_eq!(
                container.status(),
                proto::ContainerStatus::Created,
                "a new container is {:?}",
                container.status()
            );
            let deleted = bounded("delete --force", daemon.delete(id, true)).await?;
            prop_assert!(
                deleted.is_ok(),
                "force-deleting a container just created: {:?}",
                deleted
            );
            let gone = bounded("get", daemon.get(id)).await?;
            prop_assert_eq!(gone.err().map(|s| s.code()), Some(Code::NotFound));
        }
    }
    let output = std::fs::read_to_string(&output).unwrap_or_default();
    prop_assert!(
        !output.contains("panicked at"),
        "the container's init panicked: {}",
        output
    );
    prop_assert!(
        process_alive(daemon.pid() as i32),
        "berthd died:\n{}",
        daemon.logs()
    );
    Ok(())
}

/// config.json is the largest piece of caller input, and it reaches serde, cgroups-rs, the
/// mount code and the init. This feeds the daemon arbitrary JSON (nulls, booleans, huge and
/// negative numbers, long strings, large arrays, nesting past serde's recursion limit),
/// non-JSON bytes, truncated documents, and, mostly, a valid `runc spec` config with
/// fields replaced by random values, mounts whose destinations climb out with `..` or name
/// host paths (directly or through symlinks planted in the rootfs), root.path a symlink
/// leading out of the bundle, and generated namespaces, resources, propagation and
/// cgroupsPath. Each create must either fail with a clear error and leave nothing, or
/// succeed and then be force-deleted completely; the daemon and the container's init must
/// never panic, the daemon must keep serving, no mount may appear on the host, and nothing
/// may be written through an escaping destination. (Where every host mount is private, as
/// on the test machines, a propagation leak cannot show here: the shared case is pinned by
/// `shared_rootfs_propagation_leaks_no_mount`.)
#[test]
fn any_config_document_is_refused_or_cleaned_up() {
    const ID: &str = "fuzz-config";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let daemon = rt.block_on(Daemon::start());
    let victim = plant_victim(daemon.dir.path());
    let env = ConfigEnv::new(&victim);
    let watched = [env.bundle.path(), env.scratch.path(), daemon.dir.path()];
    let mounts_before = host_mounts(&watched);
    check(
        &daemon,
        &[],
        64,
        &doc_strategy(&victim, env.scratch.path()),
        |doc| {
            let mounts = host_mounts(&watched);
            // Whatever an earlier, failed case may have left must not be blamed on this one.
            let _ = rt.block_on(daemon.delete(ID, true));
            let before = Leftovers::of(&daemon);
            rt.block_on(config_case(&daemon, &env, ID, &doc))?;
            prop_assert_eq!(host_mounts(&watched), mounts, "the host's mounts changed");
            victim_intact(&victim)?;
            before.unchanged(&daemon, ID)
        },
    );
    assert_eq!(
        host_mounts(&watched),
        mounts_before,
        "the host's mounts changed"
    );
    rt.block_on(assert_serving(&daemon));
}

// ---------------------------------------------------------------------------------------
// Regressions: defects found while fuzzing, each reduced to its smallest input.
// ---------------------------------------------------------------------------------------

/// Found by `any_id_is_validated_before_anything_is_touched`. D1 allows ids of up to 255
/// bytes; delete once renamed the state directory to `~deleting.<id>`, a name 10 bytes
/// longer, which failed with ENAMETOOLONG for ids of 246 bytes or more and left such a
/// container undeletable. Tombstones now go into a `~deleting/` directory under their own
/// name.
#[tokio::test]
async fn ids_of_up_to_255_bytes_can_be_deleted() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["true"]);
    let id = "x".repeat(255);
    daemon.create(&id, &bundle, None).await.expect("a valid id");
    let deleted = daemon.delete(&id, true).await;
    assert!(
        deleted.is_ok(),
        "force-deleting a container with a {}-byte id: {deleted:?}",
        id.len()
    );
    assert!(!daemon.root.join(&id).exists());
    assert_eq!(daemon.get(&id).await.unwrap_err().code(), Code::NotFound);
}

/// Found by `any_id_is_validated_before_anything_is_touched`. Error messages quote the
/// caller's input in full, and a gRPC status travels in an HTTP/2 header: past about 16 KiB
/// (16,086 bytes of `x` as an id; only 1,788 bytes of U+0001, which the message escapes and
/// the header percent-encodes) the client cannot receive the header, so instead of
/// INVALID_ARGUMENT "invalid container ID format" it gets an "h2 protocol error" (INTERNAL
/// or RESOURCE_EXHAUSTED) and its connection is torn down with GOAWAY. A bundle path of the
/// same size does the same to CreateContainer.
#[tokio::test]
async fn oversized_input_gets_invalid_argument_not_a_transport_error() {
    let daemon = Daemon::start().await;
    let long = "x".repeat(17_000);
    let got = daemon.get(&long).await.unwrap_err();
    assert_eq!(
        (
            got.code(),
            got.message().starts_with("invalid container ID format")
        ),
        (Code::InvalidArgument, true),
        "GetContainer with a 17,000-byte id: {got:?}"
    );
    let created = daemon
        .client()
        .await
        .create_container(proto::CreateContainerRequest {
            id: "fuzz".into(),
            bundle: format!("/{long}"),
            stdout_path: String::new(),
            stderr_path: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        created.code(),
        Code::InvalidArgument,
        "CreateContainer with a 17,001-byte bundle path: {created:?}"
    );
}

/// Gives every reader blocked on the FIFO at `path` an end of file, until none is left.
struct FifoReleaser(PathBuf);

impl Drop for FifoReleaser {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let mut idle = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while idle < 20 && std::time::Instant::now() < deadline {
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.0);
            match opened {
                Ok(writer) => {
                    drop(writer);
                    idle = 0;
                }
                Err(_) => idle += 1,
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Found while choosing inputs for `any_bundle_path_fails_cleanly` (a bundle whose
/// config.json is a special file). berthd reads config.json with a blocking read on a
/// runtime worker thread: when it is a FIFO nobody writes to, CreateContainer never answers,
/// the id stays locked, and the worker is lost. As many such calls as the daemon has
/// workers (one per CPU) stop the whole daemon: even the health check gets no answer.
#[tokio::test]
async fn a_fifo_config_json_is_refused_without_hanging_the_daemon() {
    let daemon = Daemon::start().await;
    let bundle = tempfile::tempdir().unwrap();
    let fifo = bundle.path().join("config.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Dropped before the daemon, whose own clean-up needs a daemon that answers.
    let _release = FifoReleaser(fifo.clone());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut creates = Vec::new();
    for n in 0..=workers {
        let channel = daemon.channel().await;
        let bundle = bundle.path().to_str().unwrap().to_owned();
        creates.push(tokio::spawn(async move {
            let request = proto::CreateContainerRequest {
                id: format!("fifo-{n}"),
                bundle,
                stdout_path: String::new(),
                stderr_path: String::new(),
                ..Default::default()
            };
            let mut client = proto::container_service_client::ContainerServiceClient::new(channel);
            tokio::time::timeout(Duration::from_secs(5), client.create_container(request)).await
        }));
    }
    // Every create is answered (within its 5 s bound), and the daemon still serves.
    for create in creates {
        let answer = create.await.unwrap();
        assert!(
            matches!(&answer, Ok(Err(status)) if status.code() == Code::InvalidArgument),
            "CreateContainer with a FIFO as config.json: {answer:?}"
        );
    }
    let health = tokio::time::timeout(Duration::from_secs(3), daemon.health("")).await;
    assert!(
        matches!(health, Ok(Ok(ServingStatus::Serving))),
        "after {} creates with a FIFO config.json, the health check got {health:?}",
        workers + 1
    );
}

/// Found while choosing inputs for `any_bundle_path_fails_cleanly` (a bundle whose
/// config.json is a special file). berthd reads config.json whole, with no bound: a
/// symlink to /dev/zero makes it allocate until the allocation fails (or, without an
/// address-space limit, until the kernel's OOM killer steps in, on this daemon or on
/// anything else on the host). The test caps the daemon at 2 GiB of address space first,
/// so a failing run costs seconds, not the host.
#[tokio::test]
async fn a_config_json_on_dev_zero_is_refused_without_reading_it() {
    let daemon = Daemon::start().await;
    let cap = libc::rlimit {
        rlim_cur: 2 << 30,
        rlim_max: 2 << 30,
    };
    // SAFETY: plain syscall on a pid this test owns, with a valid rlimit.
    let capped = unsafe {
        libc::prlimit(
            daemon.pid() as libc::pid_t,
            libc::RLIMIT_AS,
            &cap,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(capped, 0, "prlimit: {}", std::io::Error::last_os_error());
    let bundle = tempfile::tempdir().unwrap();
    symlink("/dev/zero", bundle.path().join("config.json")).unwrap();
    let mut client = daemon.client().await;
    let call = client.create_container(proto::CreateContainerRequest {
        id: "zero".into(),
        bundle: bundle.path().to_str().unwrap().into(),
        stdout_path: String::new(),
        stderr_path: String::new(),
        ..Default::default()
    });
    let answer = tokio::time::timeout(Duration::from_secs(30), call).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kib < 256 * 1024,
        "berthd's resident memory peaked at {} MiB reading config.json; answer: {answer:?}",
        peak_kib / 1024
    );
    assert!(
        matches!(&answer, Ok(Err(status)) if status.code() == Code::InvalidArgument),
        "CreateContainer with config.json -> /dev/zero: {answer:?}"
    );
}

/// Found while checking why `any_config_document_is_refused_or_cleaned_up` sees no leaked
/// mount: on this test host every mount is private, while on a systemd host `/` is shared.
/// With `linux.rootfsPropagation` "shared" or "rshared", the init makes its copy of the
/// host's mounts shared (peers of the host's) before binding the rootfs onto itself and
/// mounting /proc, /dev, /sys and the cgroups in it, so every one of those mounts also
/// appears in the host's mount table. The create then fails (pivot_root refuses a shared
/// parent, EINVAL), and the ~35 mounts stay on the host after the delete. Like runc, berth
/// now makes the mount holding the rootfs private first, so the create succeeds and nothing
/// reaches the host, before or after the delete. The test reproduces a shared host by
/// making the bundle's rootfs a shared mount point; its own mount and anything stacked on
/// it are detached at the end.
#[tokio::test]
async fn shared_rootfs_propagation_leaks_no_mount() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["true"]);
    let rootfs = bundle.path().join("rootfs");
    let _unmount = share_rootfs(&bundle);
    bundle.edit(|config| config["linux"]["rootfsPropagation"] = "rshared".into());
    let under_rootfs = || host_mounts(&[&rootfs]);
    let before = under_rootfs();

    daemon.create("shared", &bundle, None).await.unwrap();
    let created = under_rootfs();
    daemon.delete("shared", true).await.unwrap();
    let deleted = under_rootfs();
    for (when, after) in [("create", created), ("delete", deleted)] {
        assert_eq!(
            after.len(),
            before.len(),
            "after the {when}, {} mounts of the container showed on the host, such as {:?}",
            after.len() - before.len(),
            &after[..after.len().min(6)]
        );
    }
}

/// Found by `any_config_document_is_refused_or_cleaned_up` (minimal input: `"mounts": []`).
/// The init reports "ready" to berthd before it opens the exec FIFO, which it does through
/// /proc/self/fd inside the container. With no /proc mounted there, that open failed the
/// moment create had answered: the container was dead before it was ever started. The init
/// now opens the FIFO through a descriptor of the state directory; this container must wait
/// for start and then run its process to a clean exit.
#[tokio::test]
async fn a_container_without_proc_waits_for_start() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["true"]);
    bundle.edit(|config| config["mounts"] = json!([]));
    let output = tempfile::tempdir().unwrap();
    let stderr = output_file(&output, "stderr");
    let created = match daemon.create("noproc", &bundle, Some(&stderr)).await {
        // Refusing the bundle, with a message, is a fix too.
        Err(status) => return assert!(!status.message().is_empty()),
        Ok(created) => created,
    };
    assert_eq!(created.status(), proto::ContainerStatus::Created);
    daemon.start_container("noproc").await.unwrap();
    let exit = wait_exit_status(&mut daemon.client().await, "noproc").await;
    assert_eq!(
        (exit.code, exit.signal),
        (0, 0),
        "the container's stderr says: {:?}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    daemon.delete("noproc", false).await.unwrap();
}
