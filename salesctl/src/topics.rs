//! `salesctl topics create`: every topic of the pipeline with its partition count,
//! cleanup policy and retention; idempotent, and loud about topics that exist wrongly.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use kafka_runtime::config::KafkaArgs;
use kafka_runtime::topic_admin::{TopicOutcome, TopicsReport, ensure_topics};
use schemas::topics::DEFAULT_PARTITIONS;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create every missing topic and check the existing ones. Safe to run again:
    /// topics that exist as designed are left alone.
    Create(CreateArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Partitions of every topic. Customer-keyed topics are co-partitioned, so all
    /// share this one count.
    #[arg(long, env = "SALES_TOPIC_PARTITIONS", default_value_t = DEFAULT_PARTITIONS, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Replicas of every topic: 1 on a single-node broker, 3 on a cluster. Each topic is
    /// created with min.insync.replicas one less than its replicas, at most a majority
    /// of them, at least 1 (2 of 3). An existing topic with fewer replicas is an error.
    /// `--replication-factor` is the same flag.
    #[arg(long, alias = "replication-factor", env = "SALES_TOPIC_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication: i32,
}

pub async fn run(kafka: &KafkaArgs, command: TopicsCommand) -> anyhow::Result<ExitCode> {
    match command {
        TopicsCommand::Create(args) => {
            let report = ensure_topics(kafka, args.partitions, args.replication).await?;
            print!("{}", render(&report));
            Ok(if report.problems().next().is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// The report as the operator reads it: one line per topic, then a summary.
pub fn render(report: &TopicsReport) -> String {
    let mut out = String::new();
    for (name, outcome) in &report.topics {
        match outcome {
            TopicOutcome::Created => out.push_str(&format!("created  {name}\n")),
            TopicOutcome::Exists { notes } if notes.is_empty() => out.push_str(&format!("ok       {name}\n")),
            TopicOutcome::Exists { notes } => out.push_str(&format!("ok       {name} (note: {})\n", notes.join("; "))),
            TopicOutcome::Mismatch { problems } => out.push_str(&format!("ERROR    {name}: {}\n", problems.join("; "))),
        }
    }
    let problems = report.problems().count();
    let created = report.created();
    if problems > 0 {
        out.push_str(&format!(
            "{problems} problem(s) found; fix the topics above before starting the pipeline\n"
        ));
    } else if created == 0 {
        out.push_str(&format!(
            "nothing needed creating: all {} topics exist as designed\n",
            report.topics.len()
        ));
    } else {
        out.push_str(&format!("created {created} of {} topics\n", report.topics.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_factor_is_the_old_name_of_replication() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            create: CreateArgs,
        }
        let new = Cli::try_parse_from(["x", "--replication", "3"]).unwrap();
        let old = Cli::try_parse_from(["x", "--replication-factor", "3"]).unwrap();
        assert_eq!((new.create.replication, old.create.replication), (3, 3));
    }

    #[test]
    fn a_second_run_says_nothing_needed_creating() {
        let report = TopicsReport {
            topics: vec![("a".into(), TopicOutcome::Exists { notes: vec![] })],
        };
        assert!(render(&report).ends_with("nothing needed creating: all 1 topics exist as designed\n"));
    }

    #[test]
    fn a_mismatch_is_an_error_line_and_no_success_summary() {
        let report = TopicsReport {
            topics: vec![
                ("a".into(), TopicOutcome::Created),
                (
                    "b".into(),
                    TopicOutcome::Mismatch {
                        problems: vec!["has 3 partitions, expected 6".into()],
                    },
                ),
            ],
        };
        let text = render(&report);
        assert!(text.contains("ERROR    b: has 3 partitions, expected 6"), "{text}");
        assert!(text.contains("1 problem(s) found"), "{text}");
    }
}
