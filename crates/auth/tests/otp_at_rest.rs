//! Hardening, point 10: two-factor secrets are encrypted at rest, on SQLite and (when
//! `XCORE_TEST_DATABASE_URL` is set) PostgreSQL. Secrets stored in clear before keep
//! working and get encrypted; a wrong key is an error that names the cause, never a
//! wrong code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use xcore_auth::{Accounts, Auth, AuthConfig, AuthError, LogNotifier, MIGRATIONS, OtpKey};
use xcore_db::{Database, DatabaseConfig};
use xcore_middleware::CurrentUser;
use xcore_otp::{Algorithm, Secret, Totp};

const SECRET: &[u8] = b"an HS256 secret of at least thirty-two bytes";
const PASSWORD: &str = "correct horse battery";
/// The address logins come from.
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

fn auth(db: &Database, key: u8) -> Auth {
    let config = AuthConfig::default();
    let tokens = config.access_tokens(SECRET).unwrap();
    let key = OtpKey::from_bytes(&[key; 32]);
    Auth::new(db.clone(), &config, tokens, key, Arc::new(LogNotifier)).unwrap()
}

/// Runs `check` on a fresh migrated database of every backend.
async fn on_every_backend<F, Fut>(label: &str, check: F)
where
    F: Fn(Database) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("auth.db").display());
    let mut urls = vec![sqlite];
    urls.extend(xcore_db::testing::fresh_postgres_url(label).await);
    for url in urls {
        let db = Database::new(&DatabaseConfig { url, ..Default::default() }).unwrap();
        db.migrate(&[&MIGRATIONS]).await.unwrap();
        check(db).await;
    }
}

fn user(id: i64) -> CurrentUser {
    CurrentUser { user_id: id, session_id: "s".to_owned(), roles: Vec::new() }
}

fn code(secret: &[u8], offset: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let at = now.checked_add_signed(offset).unwrap();
    Totp::new(Secret::from_bytes(secret).unwrap(), Algorithm::Sha1, 6).unwrap().code_at(at)
}

async fn stored(accounts: &Accounts, id: i64) -> Vec<u8> {
    accounts.by_id(id).await.unwrap().unwrap().otp_secret.unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test]
async fn the_stored_secret_is_never_the_secret() {
    on_every_backend("auth_otp_at_rest", |db| async move {
        let auth = auth(&db, 1);
        let id = auth.register("ada@example.com", PASSWORD, None).await.unwrap().id;
        let setup = auth.setup_otp(&user(id)).await.unwrap();
        let secret = Secret::from_base32(&setup.secret).unwrap().as_bytes().to_vec();
        let pending = stored(auth.accounts(), id).await;
        assert!(!contains(&pending, &secret), "the pending secret is stored in clear");

        auth.enable_otp(&user(id), &code(&secret, -30)).await.unwrap();
        let enabled = stored(auth.accounts(), id).await;
        assert!(!contains(&enabled, &secret), "the enabled secret is stored in clear");
        auth.login("ada@example.com", PASSWORD, Some(&code(&secret, 0)), CLIENT).await.unwrap();
        let found = auth.seal_stored_otp_secrets().await.unwrap();
        assert_eq!((found.sealed, found.sealed_now, found.unreadable), (1, 0, vec![]));
    })
    .await;
}

#[tokio::test]
async fn secrets_stored_in_clear_keep_working_and_get_encrypted() {
    on_every_backend("auth_otp_in_clear", |db| async move {
        let auth = auth(&db, 1);
        let accounts = auth.accounts();
        let now = chrono::Utc::now().naive_utc();
        let mut ids = Vec::new();
        for (n, email) in ["ada@example.com", "grace@example.com"].into_iter().enumerate() {
            let id = auth.register(email, PASSWORD, None).await.unwrap().id;
            let secret = [u8::try_from(n).unwrap() + b'a'; 20];
            accounts.set_otp(id, Some(&secret), true, None, now).await.unwrap();
            ids.push((id, secret));
        }

        // On its next use, a secret in clear signs in and is encrypted.
        let (ada, ada_secret) = ids[0];
        auth.login("ada@example.com", PASSWORD, Some(&code(&ada_secret, 0)), CLIENT).await.unwrap();
        assert!(!contains(&stored(accounts, ada).await, &ada_secret));
        // The others are encrypted by the startup pass, once.
        let found = auth.seal_stored_otp_secrets().await.unwrap();
        assert_eq!((found.sealed, found.sealed_now, found.unreadable), (1, 1, vec![]));
        let (grace, grace_secret) = ids[1];
        assert!(!contains(&stored(accounts, grace).await, &grace_secret));
        assert_eq!(auth.seal_stored_otp_secrets().await.unwrap().sealed_now, 0);
        auth.login("grace@example.com", PASSWORD, Some(&code(&grace_secret, 0)), CLIENT)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_wrong_key_or_a_copied_secret_is_an_error_that_says_so() {
    on_every_backend("auth_otp_wrong_key", |db| async move {
        let auth = auth(&db, 1);
        let accounts = auth.accounts();
        let id = auth.register("ada@example.com", PASSWORD, None).await.unwrap().id;
        let setup = auth.setup_otp(&user(id)).await.unwrap();
        let secret = Secret::from_base32(&setup.secret).unwrap().as_bytes().to_vec();
        auth.enable_otp(&user(id), &code(&secret, -30)).await.unwrap();

        let other_key = self::auth(&db, 2);
        let refused =
            other_key.login("ada@example.com", PASSWORD, Some(&code(&secret, 0)), CLIENT).await;
        let Err(AuthError::Internal(detail)) = refused else { panic!("{refused:?}") };
        assert!(detail.contains("does not decrypt with `auth.otp_secret_key`"), "{detail}");
        let account = accounts.by_id(id).await.unwrap().unwrap();
        assert_eq!(account.failed_logins, 0, "a wrong key is not the user's failure");
        let found = other_key.seal_stored_otp_secrets().await.unwrap();
        assert_eq!((found.sealed, found.unreadable), (0, vec![id]));
        assert!(found.first_error.unwrap().contains(&format!("account {id} does not decrypt")));

        // Copied into another account, the sealed secret does not open there.
        let grace = auth.register("grace@example.com", PASSWORD, None).await.unwrap().id;
        let now = chrono::Utc::now().naive_utc();
        let copied = stored(accounts, id).await;
        accounts.set_otp(grace, Some(&copied), true, None, now).await.unwrap();
        let refused =
            auth.login("grace@example.com", PASSWORD, Some(&code(&secret, 0)), CLIENT).await;
        assert!(matches!(refused, Err(AuthError::Internal(_))), "{refused:?}");
    })
    .await;
}
