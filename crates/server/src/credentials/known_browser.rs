//! Browsers an account signed in from before. After a successful sign-in the browser keeps a
//! mark: the account, when, and a random browser id, sealed with the server secret. Presented
//! again with a sign-in attempt for that account, it lets the attempt count toward its own
//! bucket instead of the client address's and the account's ceiling, so someone guessing at an
//! account from many addresses cannot keep its owner out of a browser they used before.
//!
//! The mark proves only that this browser signed in to the account since its password last
//! changed; it grants nothing else, so it needs no storage (a new password ends every mark) and
//! any server process can check it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};

use crate::accounts::entities::user;
use crate::secret::{ServerSecret, constant_time_eq, random_token};
use crate::tenants::TenantId;

/// Base name of the cookie that carries the mark.
pub const COOKIE: &str = "gatehouse_known_browser";

/// How long a browser stays known after its last sign-in.
pub const LIFETIME: TimeDelta = TimeDelta::days(90);

/// The seal of `payload`, bound to the tenant and to the account's current password: a new
/// password makes every earlier mark worthless.
fn seal(secret: &ServerSecret, tenant: TenantId, user: &user::Model, payload: &str) -> String {
    let bound = format!("{}.{}.{payload}", tenant.0, user.password_change_date.timestamp_micros());
    URL_SAFE_NO_PAD.encode(secret.mac("known-browser", bound.as_bytes()))
}

/// A new mark for a browser that just signed in to account `user`.
pub fn issue(secret: &ServerSecret, tenant: TenantId, user: &user::Model, now: DateTime<Utc>) -> String {
    let payload = format!("{}.{}.{}", user.id, now.timestamp(), random_token(12));
    let seal = seal(secret, tenant, user, &payload);
    format!("{payload}.{seal}")
}

/// The browser id in `mark` when it is a genuine, current mark for account `user` made since its
/// password last changed.
pub fn recognise(secret: &ServerSecret, tenant: TenantId, mark: &str, user: &user::Model, now: DateTime<Utc>) -> Option<String> {
    if mark.len() > 200 {
        return None;
    }
    let (payload, presented) = mark.rsplit_once('.')?;
    let mut parts = payload.splitn(3, '.');
    let (owner, issued, browser) = (parts.next()?, parts.next()?, parts.next()?);
    if owner.parse::<i64>().ok()? != user.id {
        return None;
    }
    let issued = DateTime::from_timestamp(issued.parse().ok()?, 0)?;
    if issued > now + TimeDelta::minutes(5) || now - issued > LIFETIME {
        return None;
    }
    constant_time_eq(seal(secret, tenant, user, payload).as_bytes(), presented.as_bytes()).then(|| browser.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_recognised_only_for_its_account_while_current_and_unaltered() {
        let secret = ServerSecret::from_bytes(&[7; 32]);
        let tenant = TenantId(uuid::Uuid::nil());
        let now = Utc::now();
        let account = |id: i64| crate::credentials::cache::tests::account(id, now - TimeDelta::days(1));
        let mark = issue(&secret, tenant, &account(42), now);
        let browser = recognise(&secret, tenant, &mark, &account(42), now).expect("recognised");
        assert_eq!(browser.len(), 16);
        assert_eq!(recognise(&secret, tenant, &mark, &account(43), now), None, "another account");
        assert_eq!(recognise(&secret, tenant, &mark, &account(42), now + LIFETIME + TimeDelta::seconds(1)), None, "expired");
        let other_tenant = TenantId(uuid::Uuid::from_u128(1));
        assert_eq!(recognise(&secret, other_tenant, &mark, &account(42), now), None, "another tenant");
        assert_eq!(recognise(&ServerSecret::from_bytes(&[8; 32]), tenant, &mark, &account(42), now), None, "another secret");
        let forged = mark.replacen("42.", "43.", 1);
        assert_eq!(recognise(&secret, tenant, &forged, &account(43), now), None, "rewritten account");
        let mut reset = account(42);
        reset.password_change_date = now;
        assert_eq!(recognise(&secret, tenant, &mark, &reset, now), None, "a new password ends every mark");
        assert_eq!(recognise(&secret, tenant, "", &account(42), now), None);
        assert_eq!(recognise(&secret, tenant, "42.1.x", &account(42), now), None);
    }
}
