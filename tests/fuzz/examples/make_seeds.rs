//! Writes the seed corpus of every fuzz target into `corpus/<target>/`:
//! the valid inputs the crates' own tests use (CONNECT, PUBLISH, SUBSCRIBE
//! as the edge tests send them, the payloads of the policy tests, a real
//! release bundle and a real published repository signed with the fixed
//! keys of `wardgate_fuzz`), plus edge cases. Run it again after changing
//! a fixture or a wire format, without the fuzzing flags:
//!
//! ```sh
//! cargo run --manifest-path tests/fuzz/Cargo.toml --example make_seeds
//! ```
//!
//! The output is deterministic except for expiry times and the signatures
//! over them, so re-running it rewrites the TUF seeds.

use std::path::{Path, PathBuf};

use gateway::edge::frame::encode_remaining_length;
use sha2::{Digest, Sha256};
use tuf_repo::{OnlineKeys, Upload};
use wardgate_fuzz::{
    expiries, key, manufacturer, manufacturer_key, seed_release, server_repo, BoxError,
    HARDWARE_ID, IMAGE, TARGET,
};

const TELEMETRY: &str = r#"{"schema":1,"seq":1,"ts":"2026-01-01T00:00:00Z","readings":[{"kind":"heart_rate","value":70.0}]}"#;
const TELEMETRY_ALL: &str = r#"{"schema":1,"seq":42,"ts":"2026-01-01T00:00:00.5+01:00","readings":[{"kind":"heart_rate","value":20},{"kind":"spo2","value":100},{"kind":"respiratory_rate","value":0},{"kind":"temperature","value":36.6},{"kind":"systolic_bp","value":120},{"kind":"diastolic_bp","value":80},{"kind":"infusion_rate","value":1.5e1}]}"#;
const STATUS: &str = r#"{"schema":1,"seq":2,"ts":"2026-01-01T00:00:00Z","activity":"idle","firmware_version":"1.0.0"}"#;
const STATUS_BATTERY: &str = r#"{"schema":1,"seq":3,"ts":"2026-01-01T00:00:00Z","activity":"therapy_in_progress","firmware_version":"1.5.0","battery_pct":100}"#;
const REPORT: &str = r#"{"schema":1,"seq":3,"ts":"2026-01-01T00:00:00Z","campaign_id":"c1","version":"2.0.0","outcome":"healthy"}"#;
const REPORT_DETAIL: &str = r#"{"schema":1,"seq":4,"ts":"2026-01-01T00:00:00Z","campaign_id":"c1","version":"2.0.0","outcome":"rolled_back","detail":"self-test failed"}"#;
const COMMAND: &str = r#"{"schema":1,"seq":9,"ts":"2026-01-01T00:00:00Z","command":"sync_time"}"#;

fn main() -> Result<(), BoxError> {
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let repo = rt.block_on(server_repo(dir))?;
    let bundle = rt.block_on(seed_release(&repo, dir))?;
    let role = std::fs::read(&bundle.role_metadata)?;

    edge(&out.join("edge_frames"), &out.join("edge_policy"))?;
    messages(&out.join("protocol_messages"))?;
    offers(&out.join("ota_offer"), &role)?;
    uploads(&out.join("ota_upload"), &role)?;

    // A repository as the gateway fetches it: before and after the release.
    let before = metadata_files(&repo.metadata_dir())?;
    let upload = Upload {
        manufacturer: manufacturer(),
        role_metadata: role.clone(),
        images: vec![bundle.image.clone()],
    };
    let online = OnlineKeys {
        snapshot: vec![key(3)],
        timestamp: vec![key(4)],
    };
    let exp = expiries();
    let published = rt.block_on(tuf_repo::accept_upload(
        &repo,
        &upload,
        &online,
        exp.snapshot,
        exp.timestamp,
        &dir.join("published"),
    ))?;
    let after = metadata_files(&published.dir.join("metadata"))?;
    let root1 = std::fs::read(repo.metadata_file("1.root.json"))?;
    let tuf = out.join("tuf_metadata");
    clean(&tuf)?;
    write(&tuf, "enrolled", &join(&before))?;
    write(&tuf, "released", &join(&after))?;
    let mut with_root = after.clone();
    with_root[4].clone_from(&root1);
    write(&tuf, "released_root1_as_2", &join(&with_root))?;
    let mut no_role = after.clone();
    no_role[3].clear();
    write(&tuf, "released_no_role", &join(&no_role))?;
    write(&tuf, "timestamp_only", &after[0])?;
    write(&tuf, "empty", b"")?;
    println!("seeds written to {}", out.display());
    Ok(())
}

/// timestamp, newest snapshot, targets and manufacturer role, and an
/// empty 2.root.json, in the order the `tuf_metadata` target reads them.
fn metadata_files(meta: &Path) -> Result<Vec<Vec<u8>>, BoxError> {
    let newest = |suffix: &str| -> Result<Vec<u8>, BoxError> {
        let mut best: Option<(u64, PathBuf)> = None;
        for e in std::fs::read_dir(meta)? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if let Some(v) = name
                .strip_suffix(suffix)
                .and_then(|v| v.strip_suffix('.'))
                .and_then(|v| v.parse::<u64>().ok())
            {
                if best.as_ref().is_none_or(|(b, _)| v > *b) {
                    best = Some((v, p.clone()));
                }
            }
        }
        let (_, p) = best.ok_or_else(|| format!("no *.{suffix} in {}", meta.display()))?;
        Ok(std::fs::read(p)?)
    };
    Ok(vec![
        std::fs::read(meta.join("timestamp.json"))?,
        newest("snapshot.json")?,
        newest("targets.json")?,
        newest("acme-medical.json").unwrap_or_default(),
        Vec::new(),
    ])
}

fn join(files: &[Vec<u8>]) -> Vec<u8> {
    files.join(&[0xFF][..])
}

fn clean(dir: &Path) -> Result<(), BoxError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), BoxError> {
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    p.extend(encode_remaining_length(body.len()));
    p.extend(body);
    p
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(s.len())
        .expect("short string")
        .to_be_bytes()
        .to_vec();
    v.extend(s);
    v
}

fn connect(level: u8, client: &str) -> Vec<u8> {
    let mut b = string(b"MQTT");
    b.extend([level, 0x02, 0x00, 0x3c]);
    if level == 5 {
        b.push(0); // no properties
    }
    b.extend(string(client.as_bytes()));
    packet(0x10, &b)
}

fn publish(level: u8, flags: u8, topic: &str, pkid: u16, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut b = string(topic.as_bytes());
    if (flags >> 1) & 3 != 0 {
        b.extend(pkid.to_be_bytes());
    }
    if level == 5 {
        b.extend(encode_remaining_length(props.len()));
        b.extend(props);
    }
    b.extend(payload);
    packet(0x30 | flags, &b)
}

fn subscribe(level: u8, filters: &[&str]) -> Vec<u8> {
    let mut b = 7u16.to_be_bytes().to_vec();
    if level == 5 {
        b.push(0);
    }
    for f in filters {
        b.extend(string(f.as_bytes()));
        b.push(1);
    }
    packet(0x82, &b)
}

fn unsubscribe(level: u8, filters: &[&str]) -> Vec<u8> {
    let mut b = 8u16.to_be_bytes().to_vec();
    if level == 5 {
        b.push(0);
    }
    for f in filters {
        b.extend(string(f.as_bytes()));
    }
    packet(0xA2, &b)
}

fn edge(frames: &Path, policy: &Path) -> Result<(), BoxError> {
    clean(frames)?;
    clean(policy)?;
    let own = |leaf: &str| format!("wardgate/v1/devices/pump-1/{leaf}");
    for level in [4u8, 5] {
        let v = format!("v{level}");
        let telemetry = publish(level, 0x02, &own("telemetry"), 1, &[], TELEMETRY.as_bytes());
        let status = publish(level, 0x03, &own("status"), 2, &[], STATUS.as_bytes());
        let report = publish(level, 0x02, &own("ota/report"), 3, &[], REPORT.as_bytes());
        let sub = subscribe(level, &[&own("cmd"), &own("ota/offer"), &own("#")]);
        let unsub = unsubscribe(level, &[&own("ota/+")]);
        let puback = packet(0x40, &5u16.to_be_bytes());
        let ping = packet(0xC0, &[]);
        let disconnect = packet(0xE0, &[]);
        let session: Vec<u8> = [
            connect(level, "pump-1"),
            telemetry.clone(),
            status.clone(),
            report.clone(),
            sub.clone(),
            unsub.clone(),
            puback.clone(),
            ping.clone(),
            disconnect,
        ]
        .concat();
        for (piece, tag) in [
            (0u8, "whole"),
            (1, "bytewise"),
            (7, "pieces7"),
            (200, "pieces200"),
        ] {
            let mut input = vec![piece];
            input.extend(&session);
            write(frames, &format!("{v}_session_{tag}"), &input)?;
        }
        let mut only_connect = vec![0];
        only_connect.extend(connect(level, "pump-1"));
        write(frames, &format!("{v}_connect"), &only_connect)?;

        // The policy target: selector bit 0 codec, bit 1 quarantine.
        let codec = level - 4;
        let allowed = [telemetry, status, report, sub, unsub, puback, ping].concat();
        for (state, name) in [(0u8, "active"), (2, "quarantined")] {
            let mut input = vec![codec | state];
            input.extend(&allowed);
            write(policy, &format!("{v}_{name}_allowed"), &input)?;
        }
        let refused = [
            publish(
                level,
                0x02,
                "wardgate/v1/devices/pump-2/telemetry",
                4,
                &[],
                TELEMETRY.as_bytes(),
            ),
            publish(level, 0x02, &own("cmd"), 5, &[], COMMAND.as_bytes()),
            publish(level, 0x02, "$SYS/x", 6, &[], b"{}"),
            publish(level, 0x04, &own("telemetry"), 7, &[], TELEMETRY.as_bytes()),
            publish(level, 0x03, &own("telemetry"), 8, &[], TELEMETRY.as_bytes()),
            publish(level, 0x02, &own("telemetry"), 9, &[], b"{nope"),
            publish(
                level,
                0x00,
                &own("telemetry"),
                0,
                &[],
                TELEMETRY_ALL.as_bytes(),
            ),
            subscribe(
                level,
                &["#", "+/#", "wardgate/v1/devices/+/cmd", "$share/g/x"],
            ),
            subscribe(
                level,
                &[&own("#/x"), &own("a+"), "wardgate/v1/devices/pump-10/cmd"],
            ),
        ]
        .concat();
        let mut input = vec![codec];
        input.extend(&refused);
        write(policy, &format!("{v}_refused"), &input)?;
    }
    // MQTT 5 only: a topic alias (property 0x23), which the edge refuses.
    let mut input = vec![1];
    input.extend(publish(
        5,
        0x02,
        &own("telemetry"),
        1,
        &[0x23, 0, 1],
        TELEMETRY.as_bytes(),
    ));
    write(policy, "v5_topic_alias", &input)?;
    let mut input = vec![0];
    input.extend(connect(5, "pump-1"));
    input.extend(publish(
        5,
        0x02,
        &own("telemetry"),
        1,
        &[0x23, 0, 1],
        TELEMETRY.as_bytes(),
    ));
    write(frames, "v5_topic_alias", &input)?;

    // Edge cases of framing.
    for (name, bytes) in [
        ("reserved_type", &[0u8, 0x00, 0x00][..]),
        ("oversize", &[0, 0x30, 0xff, 0xff, 0xff, 0x7f][..]),
        (
            "malformed_length",
            &[0, 0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..],
        ),
        ("first_not_connect", &[0, 0xC0, 0x00][..]),
        (
            "protocol_level_3",
            &[
                0, 0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 3, 2, 0, 60, 0, 0,
            ][..],
        ),
        ("truncated", &[0, 0x10, 0x20, 0, 4, b'M', b'Q'][..]),
    ] {
        write(frames, name, bytes)?;
    }
    Ok(())
}

fn messages(dir: &Path) -> Result<(), BoxError> {
    clean(dir)?;
    let offer = offer_json(&offer_metadata())?;
    let seeds: Vec<(&str, u8, Vec<u8>)> = vec![
        ("telemetry", 0, TELEMETRY.into()),
        ("telemetry_all_kinds", 0, TELEMETRY_ALL.into()),
        (
            "telemetry_out_of_range",
            0,
            TELEMETRY.replace("70.0", "999").into(),
        ),
        ("status", 1, STATUS.into()),
        ("status_battery", 1, STATUS_BATTERY.into()),
        ("offer", 2, offer.into_bytes()),
        ("report", 3, REPORT.into()),
        ("report_detail", 3, REPORT_DETAIL.into()),
        ("command", 4, COMMAND.into()),
        ("device_message", 5, TELEMETRY.into()),
        ("device_message_status", 5, STATUS.into()),
        ("topic", 8, b"wardgate/v1/devices/pump-1/telemetry".to_vec()),
        (
            "topic_offer",
            8,
            b"wardgate/v1/devices/monitor_7/ota/offer".to_vec(),
        ),
        ("content_range", 7, b"bytes 0-499/1234".to_vec()),
        ("content_range_unknown", 7, b"  bytes 500-1233/*  ".to_vec()),
        ("content_range_unsatisfied", 7, b"bytes */1234".to_vec()),
    ];
    for (name, selector, body) in seeds {
        let mut input = vec![selector];
        input.extend(body);
        write(dir, name, &input)?;
    }
    let etag = "\"sha256-5e884898da28047151d0e56f8dc62927\"";
    for (name, len, headers) in [
        ("range_first", 1234u64, "bytes=0-499".to_owned()),
        ("range_open", 1234, "bytes=500-".to_owned()),
        ("range_suffix", 1234, "bytes=-200".to_owned()),
        ("range_past_end", 1234, "bytes=1234-".to_owned()),
        ("range_several", 1234, "bytes=0-1,5-9".to_owned()),
        ("range_empty_repr", 0, "bytes=-5".to_owned()),
        ("range_if_range", 1234, format!("bytes=100-\n{etag}")),
        (
            "range_if_range_other",
            1234,
            "bytes=100-\n\"other\"".to_owned(),
        ),
        (
            "range_huge",
            u64::MAX,
            "bytes=18446744073709551614-18446744073709551615".to_owned(),
        ),
    ] {
        let mut input = vec![6];
        input.extend(len.to_be_bytes());
        input.extend(headers.as_bytes());
        write(dir, name, &input)?;
    }
    Ok(())
}

/// Targets metadata as the offer unit tests build it, for [`IMAGE`] as
/// 2.1.0, signed by the manufacturer key.
fn offer_metadata() -> Vec<u8> {
    let signed = serde_json::json!({
        "_type": "targets",
        "spec_version": "1.0.0",
        "version": 3,
        "expires": "2099-01-01T00:00:00Z",
        "targets": {
            TARGET: {
                "length": IMAGE.len(),
                "hashes": {"sha256": hex::encode(Sha256::digest(IMAGE))},
                "custom": {"hardware_ids": [HARDWARE_ID], "version": "2.1.0", "min_version": "1.0.0"}
            }
        }
    });
    let meta = serde_json::json!({"signed": signed, "signatures": []});
    wardgate_fuzz::resign(
        &serde_json::to_vec(&meta).expect("json"),
        &manufacturer_key(),
    )
    .expect("signable")
}

fn offer_json(targets_metadata: &[u8]) -> Result<String, BoxError> {
    Ok(serde_json::json!({
        "schema": 1,
        "seq": 1,
        "ts": "2026-01-01T00:00:00Z",
        "campaign_id": "c1",
        "target_name": TARGET,
        "version": "2.1.0",
        "length": IMAGE.len(),
        "sha256": hex::encode(Sha256::digest(IMAGE)),
        "hardware_id": HARDWARE_ID,
        "download_url": "https://gw.local/fw",
        "targets_metadata": String::from_utf8(targets_metadata.to_vec())?,
    })
    .to_string())
}

fn offers(dir: &Path, role: &[u8]) -> Result<(), BoxError> {
    clean(dir)?;
    let simple = offer_json(&offer_metadata())?;
    let real = offer_json(role)?;
    for (name, selector, body) in [
        ("signed", 0u8, simple.clone()),
        ("signed_resign", 1, simple.clone()),
        ("tuf_release", 0, real.clone()),
        ("tuf_release_resign_pieces", 0x0F, real),
        ("not_json_metadata", 1, offer_json(b"{")?),
        ("older", 1, simple.replace("2.1.0", "1.4.0")),
        ("other_hardware", 1, simple.replace(HARDWARE_ID, "other-hw")),
        ("expired", 1, simple.replace("2099-01-01", "2001-01-01")),
    ] {
        let mut input = vec![selector];
        input.extend(body.as_bytes());
        write(dir, name, &input)?;
    }
    Ok(())
}

fn uploads(dir: &Path, role: &[u8]) -> Result<(), BoxError> {
    clean(dir)?;
    let body = [role, IMAGE].concat();
    let len = role.len().to_string();
    let cases: Vec<(&str, u8, String, Vec<u8>)> = vec![
        ("bundle", 0, len.clone(), body.clone()),
        ("bundle_chunks7", 7 << 1, len.clone(), body.clone()),
        (
            "bundle_chunks1_resign",
            (1 << 1) | 1,
            len.clone(),
            body.clone(),
        ),
        ("bundle_resign", 1, len.clone(), body.clone()),
        ("bundle_spaces", 0, format!("  {len} "), body.clone()),
        (
            "truncated_metadata",
            0,
            len.clone(),
            role[..role.len() / 2].to_vec(),
        ),
        ("no_image", 0, len.clone(), role.to_vec()),
        ("short_image", 0, len.clone(), [role, &IMAGE[..5]].concat()),
        ("zero", 0, "0".into(), body.clone()),
        ("too_large", 0, "1048577".into(), body.clone()),
        ("overflow", 0, "99999999999999999999".into(), body.clone()),
        ("negative", 0, "-1".into(), body.clone()),
        ("missing", 0, String::new(), body),
    ];
    for (name, selector, header, body) in cases {
        let mut input = vec![selector];
        input.extend(header.as_bytes());
        input.push(b'\n');
        input.extend(body);
        write(dir, name, &input)?;
    }
    Ok(())
}
