//! Labels: key/value pairs given at create, kept in state.json, shown by Get and List, and
//! what ListContainers filters on.
mod common;

use std::collections::HashMap;

use berth::proto;
use common::*;
use tonic::Code;

type Pairs<'a> = &'a [(&'a str, &'a str)];

fn labels(pairs: Pairs) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn create_labelled(
    daemon: &Daemon,
    id: &str,
    pairs: HashMap<String, String>,
) -> Result<proto::Container, tonic::Status> {
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let response = daemon
        .client()
        .await
        .create_container(proto::CreateContainerRequest {
            id: id.into(),
            bundle: bundle.path().to_str().unwrap().into(),
            labels: pairs,
            ..Default::default()
        })
        .await?;
    Ok(response.into_inner().container.unwrap())
}

async fn list_ids(
    daemon: &Daemon,
    selector: &[(&str, &str)],
) -> Result<Vec<String>, tonic::Status> {
    let response = daemon
        .client()
        .await
        .list_containers(proto::ListContainersRequest {
            label_selector: labels(selector),
        })
        .await?;
    Ok(response
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect())
}

#[tokio::test]
async fn labels_given_at_create_are_kept_and_shown() {
    let daemon = Daemon::start().await;
    let given = labels(&[("io.example/owner", "team-a/pod-7"), ("empty", "")]);
    let created = create_labelled(&daemon, "tagged", given.clone())
        .await
        .unwrap();
    assert_eq!(created.labels, given);
    assert_eq!(daemon.get("tagged").await.unwrap().labels, given);
    assert_eq!(daemon.list().await[0].labels, given);

    let state: serde_json::Value =
        serde_json::from_str(&stdout(&daemon.cli(&["state", "tagged"]))).unwrap();
    assert_eq!(
        state["berth"]["labels"],
        serde_json::json!({"empty": "", "io.example/owner": "team-a/pod-7"})
    );

    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let bundle_path = bundle.path().to_str().unwrap();
    let made = daemon.cli(&[
        "create",
        "--bundle",
        bundle_path,
        "--label",
        "app=web",
        "--label",
        "note=a=b",
        "by-cli",
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&daemon.cli(&["list", "--json"]))).unwrap();
    let by_cli = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "by-cli")
        .unwrap();
    assert_eq!(
        by_cli["berth"]["labels"],
        serde_json::json!({"app": "web", "note": "a=b"})
    );
}

#[tokio::test]
async fn list_keeps_the_containers_that_carry_every_pair_of_the_selector() {
    let daemon = Daemon::start().await;
    for (id, pairs) in [
        ("a", labels(&[("app", "web"), ("tier", "front")])),
        ("b", labels(&[("app", "web"), ("tier", "back")])),
        ("c", labels(&[])),
    ] {
        create_labelled(&daemon, id, pairs).await.unwrap();
    }
    let cases: [(Pairs, &[&str]); 6] = [
        (&[], &["a", "b", "c"]),
        (&[("app", "web")], &["a", "b"]),
        (&[("app", "web"), ("tier", "back")], &["b"]),
        (&[("app", "web"), ("tier", "middle")], &[]),
        (&[("app", "")], &[]),
        (&[("tier", "front")], &["a"]),
    ];
    for (selector, expected) in cases {
        assert_eq!(
            list_ids(&daemon, selector).await.unwrap(),
            expected,
            "{selector:?}"
        );
    }
    let quiet = daemon.cli(&["list", "-q", "--label", "app=web", "--label", "tier=front"]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert_eq!(stdout(&quiet), "a\n");
}

#[tokio::test]
async fn labels_survive_a_restart_and_old_state_files_have_none() {
    // A state file of an older berth, with no labels field.
    let mut daemon = Daemon::start_with(|root| write_state(root, "old", ""), &[]).await;
    let given = labels(&[("owner", "ns/one")]);
    create_labelled(&daemon, "kept", given.clone())
        .await
        .unwrap();
    daemon.terminate().await;
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    assert_eq!(daemon.get("kept").await.unwrap().labels, given);
    assert!(daemon.get("old").await.unwrap().labels.is_empty());
    assert_eq!(
        list_ids(&daemon, &[("owner", "ns/one")]).await.unwrap(),
        ["kept"]
    );
    assert_eq!(list_ids(&daemon, &[]).await.unwrap(), ["kept", "old"]);
}

#[tokio::test]
async fn bad_labels_are_refused_by_name_and_leave_nothing_behind() {
    let daemon = Daemon::start().await;
    let long_key = "k".repeat(256);
    let long_value = "v".repeat(4097);
    let many: HashMap<String, String> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
    let heavy: HashMap<String, String> = (0..5)
        .map(|i| (format!("k{i}"), "v".repeat(4000)))
        .collect();
    let cases = [
        (labels(&[("", "v")]), "labels: key \"\" is 0 bytes"),
        (
            labels(&[(&long_key, "v")]),
            "is 256 bytes; keys are 1 to 255 bytes",
        ),
        (
            labels(&[("big", &long_value)]),
            "labels: the value of \"big\" is 4097 bytes; values are at most 4096",
        ),
        (many, "labels: 65 pairs; at most 64"),
        (
            heavy,
            "labels: 20010 bytes of keys and values; at most 16384",
        ),
    ];
    for (pairs, expected) in cases {
        let error = create_labelled(&daemon, "refused", pairs)
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        assert!(error.message().contains(expected), "{}", error.message());
        assert!(!daemon.root.join("refused").exists());
    }
    assert!(daemon.list().await.is_empty());

    let error = list_ids(&daemon, &[("", "x")]).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(
        error.message().starts_with("label selector: key"),
        "{}",
        error.message()
    );

    let unsplit = daemon.cli(&["list", "--label", "novalue"]);
    assert!(!unsplit.status.success());
    assert!(
        stderr(&unsplit).contains("\"novalue\" is not KEY=VALUE"),
        "{}",
        stderr(&unsplit)
    );
    let twice = daemon.cli(&["list", "--label", "a=1", "--label", "a=2"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        stderr(&twice).contains("label \"a\" is given twice"),
        "{}",
        stderr(&twice)
    );
}
