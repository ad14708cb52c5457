//! `docker-compose.yml` cannot run here (no Docker engine), so it is kept honest by
//! checking every service built from our image against the binaries' real flags: each
//! environment variable must be read by a flag of that binary, and the command with its
//! environment must parse.

use std::collections::BTreeMap;
use std::path::Path;

use clap::CommandFactory;
use serde_yaml::Value;

fn workspace_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn compose_services() -> BTreeMap<String, Value> {
    let mut compose: Value = serde_yaml::from_str(&workspace_file("docker-compose.yml")).unwrap();
    compose.apply_merge().unwrap();
    serde_yaml::from_value(compose["services"].clone()).unwrap()
}

fn binary_command(binary: &str) -> clap::Command {
    match binary {
        "ingest" => ingest::Config::command(),
        "enricher" => enricher::Config::command(),
        "attributor" => attributor::Config::command(),
        "reporter" => reporter::Config::command(),
        "api" => api::Config::command(),
        "salesctl" => salesctl::Cli::command(),
        other => panic!("docker-compose.yml runs {other:?}, which is not a binary of this workspace"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {value:?}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
                .to_string()
        })
        .collect()
}

/// Rewrites a service's environment into the flags clap would read it as, placed at
/// the level of the command tree that owns each flag, and parses the result.
fn parse_service(service: &str, command: &[String], env: &BTreeMap<String, String>) -> Result<(), String> {
    let (binary, rest) = command
        .split_first()
        .ok_or(format!("service {service} has an empty command"))?;
    let mut levels = vec![binary_command(binary)];
    let mut path = vec![binary.clone()];
    for word in rest {
        let current = levels.last().unwrap_or_else(|| unreachable!());
        match current.find_subcommand(word) {
            Some(sub) => {
                levels.push(sub.clone());
                path.push(word.clone());
            }
            None => break,
        }
    }
    let mut per_level: Vec<Vec<String>> = vec![Vec::new(); levels.len()];
    for (variable, value) in env {
        let owner = levels.iter().enumerate().find_map(|(i, level)| {
            level
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == variable.as_str()))
                .map(|a| (i, a.get_long().map(str::to_string)))
        });
        match owner {
            Some((level, Some(long))) => per_level[level].extend([format!("--{long}"), value.clone()]),
            Some((_, None)) => return Err(format!("{variable} is read by a flag without a long name")),
            None => {
                return Err(format!(
                    "service {service} sets {variable}, which no flag of `{}` reads",
                    path.join(" ")
                ));
            }
        }
    }
    let mut argv = Vec::new();
    for (i, word) in path.iter().enumerate() {
        argv.push(word.clone());
        argv.extend(per_level[i].iter().cloned());
    }
    argv.extend(rest.iter().skip(path.len() - 1).cloned());
    binary_command(binary)
        .try_get_matches_from(&argv)
        .map(|_| ())
        .map_err(|e| format!("service {service}: `{}` does not parse:\n{e}", argv.join(" ")))
}

#[test]
fn every_pipeline_service_parses_with_the_binaries_real_flags() {
    let mut binaries_seen = Vec::new();
    for (name, service) in compose_services() {
        if service["image"].as_str() != Some("sales-pipeline:local") {
            continue;
        }
        assert!(
            service["build"].is_string(),
            "service {name} runs our image without building it"
        );
        let command = strings(&service["command"]);
        let env: BTreeMap<String, String> = serde_yaml::from_value(service["environment"].clone())
            .unwrap_or_else(|e| panic!("service {name}: environment must be a map of strings: {e}"));
        parse_service(&name, &command, &env).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            env.contains_key("KAFKA_BOOTSTRAP_SERVERS"),
            "service {name} would look for Kafka on 127.0.0.1 inside its container"
        );
        binaries_seen.push(command[0].clone());
    }
    for binary in ["ingest", "enricher", "attributor", "reporter", "api", "salesctl"] {
        assert!(binaries_seen.iter().any(|b| b == binary), "no service runs {binary}");
    }
}

#[test]
fn the_topics_service_creates_the_topics_before_the_stages_start() {
    let services = compose_services();
    assert_eq!(
        strings(&services["topics"]["command"]),
        ["salesctl", "topics", "create"]
    );
    for stage in ["ingest", "enricher", "attributor", "reporter"] {
        let condition = &services[stage]["depends_on"]["topics"]["condition"];
        assert_eq!(condition.as_str(), Some("service_completed_successfully"), "{stage}");
    }
}

#[test]
fn compose_runs_the_same_kafka_version_as_the_local_broker() {
    let script = workspace_file("scripts/kafka-local.sh");
    let version = script
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_VERSION="))
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or_else(|| panic!("no KAFKA_VERSION= line in scripts/kafka-local.sh"));
    let image = compose_services()["kafka"]["image"].as_str().unwrap().to_string();
    assert_eq!(image, format!("apache/kafka:{version}"));
    assert_eq!(
        sales_tests::KAFKA_IMAGE_TAG,
        version,
        "the tests' container runs another version"
    );
    assert!(workspace_file("scripts/kafka/pom.xml").contains(&format!("<kafka.version>{version}</kafka.version>")));
}

#[test]
fn the_image_contains_every_binary_the_services_run() {
    let dockerfile = workspace_file("Dockerfile");
    for binary in ["ingest", "enricher", "attributor", "reporter", "api", "salesctl"] {
        assert!(
            dockerfile.contains(&format!("target/release/{binary}")),
            "Dockerfile does not copy {binary}"
        );
    }
}

#[test]
fn an_environment_variable_no_flag_reads_is_caught() {
    let env = BTreeMap::from([("COMMIT_INTERVALL".to_string(), "100ms".to_string())]);
    let err = parse_service("enricher", &["enricher".to_string()], &env).unwrap_err();
    assert!(err.contains("COMMIT_INTERVALL"), "{err}");
}

#[test]
fn a_value_the_flag_refuses_is_caught() {
    let env = BTreeMap::from([("SALES_TOPIC_PARTITIONS".to_string(), "0".to_string())]);
    let command: Vec<String> = ["salesctl", "topics", "create"].map(String::from).to_vec();
    assert!(parse_service("topics", &command, &env).is_err());
}

#[test]
fn the_cluster_profile_is_three_voters_with_three_replicas_and_so_are_its_topics() {
    let services = compose_services();
    let environment = |name: &str| -> BTreeMap<String, String> {
        serde_yaml::from_value(services[name]["environment"].clone())
            .unwrap_or_else(|e| panic!("service {name}: environment must be a map of strings: {e}"))
    };
    for node in 1..=3 {
        let name = format!("kafka-{node}");
        let service = &services[&name];
        assert_eq!(strings(&service["profiles"]), ["cluster"], "{name}");
        assert_eq!(
            service["image"], services["kafka"]["image"],
            "{name} runs another Kafka"
        );
        let env = environment(&name);
        assert_eq!(env["KAFKA_NODE_ID"], node.to_string());
        assert_eq!(
            env["KAFKA_CONTROLLER_QUORUM_VOTERS"],
            "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        );
        assert!(
            env["KAFKA_ADVERTISED_LISTENERS"].starts_with(&format!("PLAINTEXT://{name}:9092,")),
            "{name} advertises another address"
        );
        for (key, value) in [
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
        ] {
            assert_eq!(env[key], value, "{name}: {key}");
        }
        // The same rule as the topics salesctl creates.
        assert_eq!(
            env["KAFKA_MIN_INSYNC_REPLICAS"],
            kafka_runtime::topic_admin::min_insync_replicas(3).to_string()
        );
    }
    let topics = environment("topics-cluster");
    assert_eq!(strings(&services["topics-cluster"]["profiles"]), ["cluster"]);
    assert_eq!(topics["SALES_TOPIC_REPLICATION_FACTOR"], "3");
    assert_eq!(
        topics["KAFKA_BOOTSTRAP_SERVERS"],
        "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    );
    for node in ["kafka-1", "kafka-2", "kafka-3"] {
        assert_eq!(
            services["topics-cluster"]["depends_on"][node]["condition"].as_str(),
            Some("service_healthy"),
            "topics-cluster waits for {node}"
        );
    }
}
