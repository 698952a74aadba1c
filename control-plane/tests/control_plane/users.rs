//! Users and keys at the domain level.

use alfred_control_plane::db::schema::api_keys;
use alfred_control_plane::error::Error;
use alfred_control_plane::users::{self, keys, CreateUser, UserStatus};
use diesel::prelude::*;

use crate::common::{create_user, start_time};
use crate::db_test;

fn input(email: &str, name: &str, quota: i64) -> CreateUser {
    CreateUser {
        email: email.into(),
        name: name.into(),
        personal_quota: quota,
        is_admin: false,
    }
}

db_test!(key_is_stored_only_as_its_hash, |db| {
    let created = create_user(&db, "Ann@Example.com", 5000, false);
    assert_eq!(created.user.email, "ann@example.com");
    assert!(keys::is_well_formed(&created.api_key));
    let rows: Vec<(String, String)> = api_keys::table
        .select((api_keys::key_hash, api_keys::key_prefix))
        .load(&mut db.conn())
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, keys::hash_key(&created.api_key));
    assert_ne!(rows[0].0, created.api_key);
    assert!(
        !rows[0].1.contains(&created.api_key[11..]),
        "more than a display prefix stored"
    );
    let found = users::authenticate(&mut db.conn(), &created.api_key)
        .unwrap()
        .unwrap();
    assert_eq!(found.id, created.user.id);
});

db_test!(duplicate_email_writes_nothing, |db| {
    create_user(&db, "dup@example.com", 10, false);
    let err = users::create_user(
        &mut db.conn(),
        start_time(),
        input("DUP@example.com", "Again", 10),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, Error::EmailTaken), "{err:?}");
    assert_eq!(users::list_users(&mut db.conn()).unwrap().len(), 1);
    let keys: i64 = api_keys::table.count().get_result(&mut db.conn()).unwrap();
    assert_eq!(keys, 1);
});

db_test!(invalid_input_names_the_field, |db| {
    let cases = [
        (input("not-an-email", "A", 1), "email"),
        (input("a@example.com", "   ", 1), "name"),
        (input("a@example.com", &"n".repeat(201), 1), "name"),
        (input("a@example.com", "A", -1), "personal_quota"),
        (
            input("a@example.com", "A", 1_000_000_000_000_001),
            "personal_quota",
        ),
    ];
    for (case, field) in cases {
        match users::create_user(&mut db.conn(), start_time(), case, None) {
            Err(Error::Invalid { field: got, .. }) => assert_eq!(got, field),
            other => panic!("expected invalid {field}, got {:?}", other.map(|c| c.user)),
        }
    }
    assert!(users::list_users(&mut db.conn()).unwrap().is_empty());
    // 200 characters and 10^15 tokens are fine.
    users::create_user(
        &mut db.conn(),
        start_time(),
        input("a@example.com", &"n".repeat(200), 1_000_000_000_000_000),
        None,
    )
    .unwrap();
});

db_test!(unknown_and_malformed_keys_do_not_authenticate, |db| {
    create_user(&db, "u@example.com", 10, false);
    let mut conn = db.conn();
    assert!(users::authenticate(&mut conn, &keys::generate().plaintext)
        .unwrap()
        .is_none());
    assert!(users::authenticate(&mut conn, "tp-short")
        .unwrap()
        .is_none());
    assert!(users::authenticate(&mut conn, "").unwrap().is_none());
});

db_test!(status_changes, |db| {
    let created = create_user(&db, "s@example.com", 10, false);
    let user = crate::common::set_status(
        &mut db.conn(),
        start_time(),
        created.user.id,
        UserStatus::Suspended,
    )
    .unwrap();
    assert_eq!(user.status(), UserStatus::Suspended);
    assert!(matches!(
        crate::common::set_status(&mut db.conn(), start_time(), 9999, UserStatus::Active),
        Err(Error::NotFound("user"))
    ));
});
