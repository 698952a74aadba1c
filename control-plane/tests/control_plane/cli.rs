//! The `alfred` binary: configuration errors and `create-admin`.

use std::process::{Command, Output};

fn alfred(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_alfred"));
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn create_admin_prints_the_key_once_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let db = [("DATABASE_URL", "sqlite:///./alfred.db")];
    let out = alfred(
        dir.path(),
        &[
            "create-admin",
            "--email",
            "admin@company.com",
            "--name",
            "Admin",
            "--json",
        ],
        &db,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(r#"{"id":1,"api_key":"tp-"#), "{stdout}");
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let key = value["api_key"].as_str().unwrap();
    assert!(
        dir.path().join("alfred.db").exists(),
        "sqlite:///./alfred.db is ./alfred.db"
    );
    // The key never reaches the logs.
    assert!(!String::from_utf8_lossy(&out.stderr).contains(key));

    let again = alfred(
        dir.path(),
        &[
            "create-admin",
            "--email",
            "ADMIN@company.com",
            "--name",
            "Admin",
        ],
        &db,
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let text = alfred(
        dir.path(),
        &[
            "create-admin",
            "--email",
            "two@company.com",
            "--name",
            "Two",
            "--quota",
            "77",
        ],
        &db,
    );
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("tp-"));
}

#[test]
fn bad_configuration_is_named_and_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = alfred(
        dir.path(),
        &["migrate"],
        &[
            ("DATABASE_URL", "sqlite:///./x.db"),
            ("DEFAULT_PERSONAL_QUOTA", "lots"),
            ("QUOTA_PERIOD", "yearly"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEFAULT_PERSONAL_QUOTA") && stderr.contains("QUOTA_PERIOD"),
        "{stderr}"
    );
    assert!(!dir.path().join("x.db").exists());

    // serve needs the filter token.
    let out = alfred(
        dir.path(),
        &["serve"],
        &[("DATABASE_URL", "sqlite:///./x.db")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ALFRED_FILTER_TOKEN"));
}

#[test]
fn a_bad_pricing_file_stops_serve_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("prices.json"), "{not json").unwrap();
    let token = "f".repeat(40);
    for file in ["prices.json", "missing.json"] {
        let out = alfred(
            dir.path(),
            &["serve"],
            &[
                ("DATABASE_URL", "sqlite:///./alfred.db"),
                ("ALFRED_FILTER_TOKEN", &token),
                ("ALFRED_BIND", "127.0.0.1:0"),
                ("PRICING_FILE", file),
            ],
        );
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("error: PRICING_FILE: "), "{stderr}");
    }
}
