//! API keys: test and live keys are separate; keys are rolled and revoked.

use serde_json::{Value, json};
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn live_and_test_keys_are_separate_and_keys_can_be_rolled_and_revoked() {
    let (_stripe, app) = stripe_app().await; // Stripe here has test credentials (sk_test_)
    // A test key cannot mint a live key (issue 19): nothing is made.
    let (status, refused) = app
        .post_json(&app.api_key, "/v1/api_keys", json!({"livemode": true}))
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (403, Some("livemode_mismatch")),
        "{refused}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM api_keys WHERE livemode")
            .await,
        0
    );
    // An owner makes one (as the dashboard's keys page does).
    let merchant_id: String = {
        use sea_orm::EntityTrait as _;
        entity::api_keys::Entity::find()
            .one(&app.db)
            .await
            .expect("query")
            .expect("the test key")
            .merchant_id
            .to_string()
    };
    let (_, live_key) = gateway::merchants::create_key(
        &app.db,
        &gateway::merchants::KeyManager::Owner(entity::ids::MerchantId::from_trusted(merchant_id)),
        true,
    )
    .await
    .expect("an owner makes a live key");
    assert!(live_key.starts_with("sk_live_"));
    // Live keys: no simulated provider, no test credentials.
    for provider in ["simulated", "stripe"] {
        let (status, b) = app
            .post_json(
                &live_key,
                "/v1/payments",
                json!({"amount": 2000, "currency": "usd", "provider": provider}),
            )
            .await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (422, Some("livemode_mismatch")),
            "{b}"
        );
    }
    // Test keys: test credentials, and livemode false on what they create.
    let (id, _) = stripe_payment(&app).await;
    let (_, p) = app
        .get_json(&app.api_key, &format!("/v1/payments/{id}"))
        .await;
    assert_eq!(p["livemode"], false);
    // Only published test cards.
    let (status, b) = app
        .post_json(
            &app.api_key,
            "/v1/payments",
            json!({"amount": 100, "currency": "usd", "provider": "simulated",
                "payment_method": {"type": "card", "card": {"number": "4111111111111111",
                "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (422, Some("card_not_a_test_card")),
        "{b}"
    );

    // Listing shows prefixes, never secrets, and only the key's own mode.
    let listed = |key: String| {
        let app = &app;
        async move {
            let (_, list) = app.get_json(&key, "/v1/api_keys").await;
            let keys = list["data"].as_array().expect("keys").clone();
            assert!(keys.iter().all(|k| k.get("secret").is_none()), "{list}");
            keys
        }
    };
    let key_id = |keys: &[Value], secret: &str| {
        keys.iter()
            .find(|k| secret.starts_with(k["prefix"].as_str().unwrap_or("-")))
            .and_then(|k| k["id"].as_str())
            .expect("key listed")
            .to_string()
    };
    let test_keys = listed(app.api_key.clone()).await;
    let live_keys = listed(live_key.clone()).await;
    assert_eq!((test_keys.len(), live_keys.len()), (1, 1));
    assert_eq!(
        (
            test_keys[0]["livemode"].clone(),
            live_keys[0]["livemode"].clone()
        ),
        (json!(false), json!(true))
    );
    let test_id = key_id(&test_keys, &app.api_key);
    let live_id = key_id(&live_keys, &live_key);
    // The live key is another world's: to the test key it does not exist.
    for action in ["roll", "revoke"] {
        let (status, _) = app
            .post_json(
                &app.api_key,
                &format!("/v1/api_keys/{live_id}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 404, "{action}");
    }
    assert_eq!(app.get_json(&live_key, "/v1/payments").await.0, 200);

    // Use the test key once so it is cached, then roll it with no grace: the old key stops.
    assert_eq!(app.get_json(&app.api_key, "/v1/payments").await.0, 200);
    let (status, rolled) = app
        .post_json(
            &app.api_key,
            &format!("/v1/api_keys/{test_id}/roll"),
            json!({}),
        )
        .await;
    assert_eq!(status, 201, "{rolled}");
    let new_test_key = rolled["secret"].as_str().expect("new secret").to_string();
    assert_eq!(
        app.get_json(&app.api_key, "/v1/payments").await.0,
        401,
        "rolled with no grace"
    );
    assert_eq!(app.get_json(&new_test_key, "/v1/payments").await.0, 200);

    // Roll with a grace period: both work until it ends.
    let (_, list) = app.get_json(&new_test_key, "/v1/api_keys").await;
    let current = list["data"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| new_test_key.starts_with(k["prefix"].as_str().unwrap_or("-")))
        .and_then(|k| k["id"].as_str())
        .expect("listed")
        .to_string();
    let (_, graced) = app
        .post_json(
            &new_test_key,
            &format!("/v1/api_keys/{current}/roll"),
            json!({"expires_in": 1}),
        )
        .await;
    let newest = graced["secret"].as_str().expect("secret").to_string();
    assert_eq!(
        app.get_json(&new_test_key, "/v1/payments").await.0,
        200,
        "within the grace"
    );
    assert_eq!(app.get_json(&newest, "/v1/payments").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        app.get_json(&new_test_key, "/v1/payments").await.0,
        401,
        "after the grace"
    );

    // A live key revokes live keys (here itself) after use: it stops at once, cache or not.
    assert_eq!(app.get_json(&live_key, "/v1/payments").await.0, 200);
    let (status, revoked) = app
        .post_json(
            &live_key,
            &format!("/v1/api_keys/{live_id}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(app.get_json(&live_key, "/v1/payments").await.0, 401);
}

/// A retried key creation (same `Idempotency-Key`) answers the key the first made, without
/// its secret, and leaves one key, not two; the first secret still works. Another body with
/// that key is a 409.
#[tokio::test]
async fn a_retried_key_creation_makes_one_key_and_never_shows_its_secret_again() {
    let app = payrail_tests::TestApp::spawn().await;
    let (status, first) = post_with_key(&app, "/v1/api_keys", "make-one-key", json!({})).await;
    assert_eq!(status, 201, "{first}");
    let secret = first["secret"]
        .as_str()
        .expect("the first answer has the secret");
    let (status, again) = post_with_key(&app, "/v1/api_keys", "make-one-key", json!({})).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert!(
        again.get("secret").is_none(),
        "a replay has no secret: {again}"
    );
    let (_, keys) = app.get_json(&app.api_key, "/v1/api_keys?limit=100").await;
    let made = keys["data"]
        .as_array()
        .map(|ks| ks.iter().filter(|k| k["id"] == first["id"]).count());
    assert_eq!(made, Some(1));
    assert_eq!(
        keys["data"].as_array().map(Vec::len),
        Some(2),
        "the app's key and one more"
    );
    let (status, _) = app.get_json(secret, "/v1/payments").await;
    assert_eq!(status, 200, "the first answer's secret is the key's");
    let (status, other) = post_with_key(
        &app,
        "/v1/api_keys",
        "make-one-key",
        json!({"livemode": true}),
    )
    .await;
    assert_eq!(status, 409, "{other}");
}
