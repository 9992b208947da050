//! `conductor group …` against a real moto server (STS for the account, S3 or a directory for the
//! registry), configured only through the standard AWS environment variables.

mod common;

use common::{MOTO_ACCOUNT, conductor};
use serde_json::Value;
use testkit::moto;

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

#[test]
fn every_group_command_has_help_with_an_example() {
    let moto = moto::shared();
    for cmd in [
        vec!["group", "--help"],
        vec!["group", "create", "--help"],
        vec!["group", "list", "--help"],
        vec!["group", "show", "--help"],
        vec!["group", "revoke", "--help"],
        vec!["group", "user-data", "--help"],
    ] {
        let (code, stdout, _) = conductor(moto, &cmd);
        assert_eq!(code, 0, "{cmd:?}");
        assert!(
            stdout.contains("Example") && stdout.contains("conductor group"),
            "{cmd:?}: {stdout}"
        );
        assert!(
            stdout.lines().all(|l| l.chars().count() <= 100),
            "{cmd:?} help fits 100 columns:\n{stdout}"
        );
    }
}

#[test]
fn create_list_show_user_data_revoke_on_s3() {
    let moto = moto::shared();
    let bucket = moto::unique_bucket("group-cli");
    moto.create_bucket(&bucket).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = common::write_config(dir.path(), &format!("s3://{bucket}/fleet"), "");
    let cfg = cfg_path.to_str().unwrap();

    let (code, out, err) = conductor(
        moto,
        &[
            "group",
            "create",
            "-c",
            cfg,
            "web",
            "--asg",
            "web-asg",
            "--launch-template",
            "lt-0123456789abcdef0",
            "--max-members",
            "3",
            "--ttl",
            "2d",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let g = json(&out);
    assert_eq!(g["account_id"], MOTO_ACCOUNT);
    assert_eq!(g["region"], moto::REGION);
    assert_eq!(g["image_ids"][0], moto::AMI, "defaults to launch.image");
    assert_eq!(
        g["extensions"]["pp_role"], "web",
        "defaults to puppet.extensions"
    );
    assert_eq!(g["certname_template"], "web-%i");
    assert_eq!(
        (g["members"].as_u64(), g["max_members"].as_u64()),
        (Some(0), Some(3))
    );

    // create-only: the name is never reused
    let (code, _, err) = conductor(
        moto,
        &[
            "group",
            "create",
            "-c",
            cfg,
            "web",
            "--asg",
            "x",
            "--max-members",
            "9",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("already exists") && err.contains("never reused"),
        "{err}"
    );

    // bad input: named, located, with the fix
    for (args, want) in [
        (
            vec!["Web", "--asg", "a", "--max-members", "1"],
            "NAME: group name `Web`",
        ),
        (vec!["db", "--max-members", "1"], "--launch-template"),
        (
            vec!["db", "--asg", "a", "--max-members", "1", "--image", "ami-x"],
            "not an AMI id",
        ),
        (
            vec![
                "db",
                "--asg",
                "a",
                "--max-members",
                "1",
                "--extension",
                "pp_authorization=x",
            ],
            "never auto-signed",
        ),
        (
            vec![
                "db",
                "--asg",
                "a",
                "--max-members",
                "1",
                "--extension",
                "pp_role",
            ],
            "NAME=VALUE",
        ),
        (
            vec!["db", "--asg", "a", "--max-members", "1", "--ttl", "10"],
            "--ttl",
        ),
    ] {
        let mut a = vec!["group", "create", "-c", cfg];
        a.extend(args);
        let (code, _, err) = conductor(moto, &a);
        assert_eq!(code, 2, "{a:?}: {err}");
        assert!(err.contains(want), "{a:?}: {err}");
    }

    let (code, out, err) = conductor(moto, &["group", "list", "-c", cfg, "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let list = json(&out);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["state"], "active");
    let (code, table, _) = conductor(moto, &["group", "list", "-c", cfg]);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("GROUP") && table.contains("0/3"),
        "{table}"
    );

    let (code, ud, err) = conductor(moto, &["group", "user-data", "-c", cfg, "web"]);
    assert_eq!(code, 0, "{err}");
    let parsed = schemas::userdata::parse("group user-data", ud.as_bytes())
        .unwrap_or_else(|d| panic!("{d}\n{ud}"));
    let p = parsed.config.puppet.expect("puppet");
    assert!(p.instance_identity);
    let csr = p.csr_attributes.expect("csr_attributes");
    assert_eq!(
        csr.custom_attributes
            .get(schemas::oids::ENROLLMENT_GROUP)
            .map(String::as_str),
        Some("web")
    );
    assert!(!ud.contains("1.2.840.113549.1.9.7"), "no secret: {ud}");
    let (_, ud_json, _) = conductor(
        moto,
        &["group", "user-data", "-c", cfg, "web", "--output", "json"],
    );
    assert_eq!(json(&ud_json)["user_data"], ud);
    let (code, _, err) = conductor(moto, &["group", "user-data", "-c", cfg, "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no enrollment group `nope`"), "{err}");

    let (code, out, _) = conductor(
        moto,
        &["group", "show", "-c", cfg, "web", "--output", "json"],
    );
    assert_eq!(code, 0);
    let show = json(&out);
    assert_eq!(show["member_list"], Value::Array(vec![]));
    assert_eq!(show["asg_name"], "web-asg");

    let (code, out, err) = conductor(
        moto,
        &["group", "revoke", "-c", cfg, "web", "--output", "json"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["result"], "revoked");
    let (_, out, _) = conductor(
        moto,
        &["group", "revoke", "-c", cfg, "web", "--output", "json"],
    );
    assert_eq!(json(&out)["result"], "already revoked");
    let (_, out, _) = conductor(moto, &["group", "show", "-c", cfg, "web"]);
    assert!(out.contains("revoked"), "{out}");
    // `conductor list` still works with groups in the registry (members appear once enrolled;
    // the signer's tests cover that).
    let (code, out, err) = conductor(moto, &["list", "-c", cfg, "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out), Value::Array(vec![]));
}
