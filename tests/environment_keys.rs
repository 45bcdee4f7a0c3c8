//! docs/contract.md §10: environment keys and the item-secret key are table state like any
//! other: changed only by commands, in the snapshot, and kept by a restore.
#![cfg(feature = "snapshot")]

use worklease::{
    Applied, Command, ConcurrentLeaseTable, EnvironmentKind, ItemSecretKey, KeyDigest, LeaseTable,
    NewEnvironment, Stamped, Timestamp,
};

const T0: i64 = 1_782_893_706_120_394;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_unix_micros(T0 + seconds * 1_000_000)
}

fn log() -> Vec<Stamped> {
    vec![
        Stamped::new(
            at(0),
            Command::CreateEnvironment {
                id: "env_a".parse().unwrap(),
                new: NewEnvironment::self_hosted("a"),
            },
        ),
        Stamped::new(
            at(1),
            Command::CreateEnvironmentKey {
                environment: "env_a".into(),
                id: "ekey_02".parse().unwrap(),
                name: Some("runners".into()),
                digest: KeyDigest::from_bytes([2; 32]),
            },
        ),
        Stamped::new(
            at(2),
            Command::CreateEnvironmentKey {
                environment: "env_a".into(),
                id: "ekey_01".parse().unwrap(),
                name: None,
                digest: KeyDigest::from_bytes([1; 32]),
            },
        ),
        Stamped::new(
            at(3),
            Command::SetItemSecretKey {
                key: ItemSecretKey::from_bytes([7; 32]),
            },
        ),
        // The first key set stays: a second proposal changes nothing.
        Stamped::new(
            at(4),
            Command::SetItemSecretKey {
                key: ItemSecretKey::from_bytes([8; 32]),
            },
        ),
    ]
}

#[test]
fn keys_and_the_item_secret_key_survive_a_snapshot_in_every_table_kind() {
    let mut table = LeaseTable::default();
    let sharded = ConcurrentLeaseTable::with_shards(Default::default(), 4);
    for stamped in log() {
        let direct = table.apply(&stamped);
        assert_eq!(sharded.apply(&stamped), direct);
        assert_eq!(Stamped::decode(&stamped.encode()).unwrap(), stamped);
    }
    assert_eq!(table.snapshot(), sharded.snapshot(), "canonical");
    let restored = LeaseTable::restore(&table.snapshot()).unwrap();
    let keys: Vec<_> = restored
        .environment_keys("env_a")
        .unwrap()
        .iter()
        .map(|key| (key.id.to_string(), key.name.clone(), *key.digest.as_bytes()))
        .collect();
    assert_eq!(
        keys,
        [
            ("ekey_01".to_owned(), None, [1; 32]),
            ("ekey_02".to_owned(), Some("runners".to_owned()), [2; 32]),
        ]
    );
    assert_eq!(
        restored.item_secret_key(),
        Some(&ItemSecretKey::from_bytes([7; 32]))
    );
    assert_eq!(restored.snapshot(), table.snapshot());
}

#[test]
fn revoking_and_deleting_remove_keys_and_unknown_keys_answer_404() {
    let mut table = LeaseTable::default();
    for stamped in log() {
        table.apply(&stamped).unwrap();
    }
    let revoke = |key: &str| Command::RevokeEnvironmentKey {
        environment: "env_a".into(),
        key: key.into(),
    };
    let revoked = table.apply(&Stamped::new(at(5), revoke("ekey_02")));
    assert!(
        matches!(revoked, Ok(Applied::EnvironmentKeyRevoked(id)) if id.to_string() == "ekey_02")
    );
    for unknown in ["ekey_02", "ekey_zz", "not a key", ""] {
        let refused = table
            .apply(&Stamped::new(at(5), revoke(unknown)))
            .unwrap_err();
        assert_eq!(refused.status(), 404, "{unknown}");
        assert_eq!(
            Applied::decode_answer(&Applied::encode_answer(&Err(refused.clone()))).unwrap(),
            Err(refused)
        );
    }
    assert_eq!(table.environment_keys("env_a").unwrap().len(), 1);
    table.delete_environment("env_a", at(6)).unwrap();
    assert_eq!(table.environment_keys("env_a").unwrap_err().status(), 404);
    // Created again, the environment has none of the old keys.
    table
        .register_environment("env_a".parse().unwrap(), EnvironmentKind::SelfHosted)
        .unwrap();
    assert!(table.environment_keys("env_a").unwrap().is_empty());
    let restored = LeaseTable::restore(&table.snapshot()).unwrap();
    assert!(restored.environment_keys("env_a").unwrap().is_empty());
}

#[test]
fn key_answers_round_trip_through_the_answer_encoding() {
    let mut table = LeaseTable::default();
    for stamped in log() {
        let answer = table.apply(&stamped);
        assert_eq!(
            Applied::decode_answer(&Applied::encode_answer(&answer)).unwrap(),
            answer
        );
    }
}
