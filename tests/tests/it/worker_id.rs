//! One worker id, two live replicas: the second says so at start and leaves the first
//! alone, instead of the two fencing each other in a loop; a worker killed with SIGKILL
//! and started again under its id is not taken for a live namesake.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sales_tests::{TestEnv, await_ready, free_local_addr, http_get, stage_args};

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stage"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the attributor: {e}"))
}

#[tokio::test]
async fn a_second_live_worker_with_the_same_id_refuses_to_start_and_a_restart_does_not() {
    let env = TestEnv::new().await;
    env.create_topics().await;
    let public = free_local_addr();
    let first_admin = free_local_addr();
    let first_args = stage_args(&env, "attributor", first_admin, public);
    let mut first = spawn(&first_args);
    await_ready(first_admin, "the first attributor to be ready", Duration::from_secs(60)).await;

    // The same group and worker id, another admin listener.
    let second_admin = free_local_addr();
    let second = spawn(&stage_args(&env, "attributor", second_admin, public));
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || second.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "the namesake must not run: {said}");
    assert!(said.contains("is in use by a live worker"), "{said}");
    // Refused once the session timeout (10 s) showed the first one is still there.
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let (status, _) = http_get(first_admin, "/readyz").await.unwrap();
    assert_eq!(status, 200, "the first worker was left alone");
    assert!(first.try_wait().unwrap().is_none(), "the first worker still runs");

    // SIGKILL: the dead worker stays in the group until its session times out (10 s),
    // but its successor under the same id does not wait for that.
    first.kill().unwrap();
    first.wait().unwrap();
    let restarted_at = Instant::now();
    let mut again = spawn(&first_args);
    await_ready(
        first_admin,
        "the restarted attributor to be ready",
        Duration::from_secs(60),
    )
    .await;
    let took = restarted_at.elapsed();
    let _ = again.kill();
    let _ = again.wait();
    assert!(
        took < Duration::from_secs(8),
        "a restart waited {took:?} for its own dead predecessor"
    );
}
