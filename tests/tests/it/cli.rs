//! Every binary documents every setting with its environment variable.

use clap::CommandFactory;

fn long_help(mut command: clap::Command) -> String {
    command.build();
    command.render_long_help().to_string()
}

fn assert_documents(binary: &str, help: &str, variables: &[&str]) {
    for variable in variables {
        assert!(
            help.contains(&format!("[env: {variable}=")),
            "{binary} --help lacks {variable}:\n{help}"
        );
    }
}

const COMMON: [&str; 5] = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "SALES_TOPIC_PREFIX",
    "LOG_FORMAT",
    "RUST_LOG",
    "ADMIN_ADDR",
];

#[test]
fn every_stage_documents_the_shared_settings() {
    for (binary, command) in [
        ("ingest", ingest::Config::command()),
        ("enricher", enricher::Config::command()),
        ("attributor", attributor::Config::command()),
        ("reporter", reporter::Config::command()),
    ] {
        command.clone().debug_assert();
        assert_documents(binary, &long_help(command), &COMMON);
    }
}

#[test]
fn ingest_documents_its_public_listener() {
    assert_documents("ingest", &long_help(ingest::Config::command()), &["INGEST_LISTEN_ADDR"]);
}

#[test]
fn stateful_stages_document_the_commit_interval() {
    for (binary, command) in [
        ("enricher", enricher::Config::command()),
        ("attributor", attributor::Config::command()),
        ("reporter", reporter::Config::command()),
    ] {
        assert_documents(binary, &long_help(command), &["COMMIT_INTERVAL", "COMMIT_MAX_RECORDS"]);
    }
}

#[test]
fn every_flag_of_every_binary_has_a_doc_and_an_environment_variable() {
    for (binary, command) in [
        ("ingest", ingest::Config::command()),
        ("enricher", enricher::Config::command()),
        ("attributor", attributor::Config::command()),
        ("reporter", reporter::Config::command()),
        ("api", api::Config::command()),
        ("salesctl", salesctl::Cli::command()),
    ] {
        for arg in command
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        {
            assert!(arg.get_help().is_some(), "{binary} --{} has no doc", arg.get_id());
            assert!(
                arg.get_env().is_some(),
                "{binary} --{} has no environment variable",
                arg.get_id()
            );
        }
    }
}
