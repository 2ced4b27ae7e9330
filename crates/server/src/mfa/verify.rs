//! Judging a code typed at sign-in or during setup, whatever device it is from: a code sent by
//! text message or e-mail, an authenticator app's code, or a recovery code. Every answer is let
//! through the account's limit on wrong codes before any comparison, under a lock that
//! concurrent guesses and other processes wait for, and a wrong one is counted before the lock
//! is let go, so none can slip past the limit.

use sea_orm::DatabaseTransaction;

use super::codes::{Answer, SentCode};
use super::entities::otp_device;
use super::otp_devices;
use super::recovery;
use super::totp::{Digits, TotpSecret, normalise_code};
use crate::accounts::entities::user;
use crate::credentials::attempts::{self, Bucket, Reservation};
use crate::error::{Error, Result, try_again_in};
use crate::state::AppState;

/// What proved the answer right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The code sent in this run (by text message or e-mail).
    SentCode,
    /// A code of the authenticator app with this id.
    Totp(i64),
    /// A recovery code of the set with this id.
    RecoveryCode(i64),
}

/// How an answer went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Right(Proof),
    /// Wrong, expired, spent or replayed: the message says which, and whether a sent code must
    /// be sent again.
    Refused {
        message: String,
        new_code_needed: bool,
    },
}

/// A code sent in this run (by text message or e-mail), and what it is bound to.
pub struct SentAnswer<'a> {
    pub sent: &'a mut SentCode,
    pub binding: &'a str,
}

/// The devices an answer may come from.
#[derive(Default)]
pub struct Candidates<'a> {
    pub sent: Option<SentAnswer<'a>>,
    pub totp: &'a [otp_device::Model],
    pub recovery: &'a [otp_device::Model],
}

/// The longest answer compared at all; longer ones are wrong without a comparison.
const LONGEST_ANSWER: usize = 128;

/// Counts one answer of `account` toward its limit; `Err(message)` when the limit is reached.
async fn reserve_guess(state: &AppState, account: &user::Model) -> Result<std::result::Result<Reservation, String>> {
    match attempts::reserve(&state.db, state.tenant, state.clock.now(), vec![Bucket::code_guesses(account.id)]).await {
        Ok(reservation) => Ok(Ok(reservation)),
        Err(Error::RateLimited { retry_after_secs }) => Ok(Err(too_many_guesses(retry_after_secs))),
        Err(other) => Err(other),
    }
}

/// Judges `answer` of `account` against every candidate device, in one write transaction: the
/// account's bucket is locked and let through first (concurrent guesses and other processes
/// wait until the end), then the codes are compared, a used app step or recovery code is taken,
/// and a wrong answer is counted, all in one commit ([`attempts::hold_in`]).
pub async fn check_answer(state: &AppState, account: &user::Model, answer: &str, candidates: Candidates<'_>) -> Result<Checked> {
    let txn = crate::db::begin_write(&state.db).await?;
    let held = match attempts::hold_in(&txn, state.tenant, state.clock.now(), vec![Bucket::code_guesses(account.id)]).await {
        Ok(held) => held,
        Err(Error::RateLimited { retry_after_secs }) => {
            return Ok(Checked::Refused { message: too_many_guesses(retry_after_secs), new_code_needed: false });
        }
        Err(other) => return Err(other),
    };
    let checked = match judge(state, &txn, account, answer.trim(), candidates).await {
        Ok(checked) => checked,
        Err(error) => {
            // The comparison failed part-way, perhaps after a code was compared: the guess
            // still counts, in a transaction of its own (this one is rolled back).
            drop(txn);
            count_apart(state, account).await?;
            return Err(error);
        }
    };
    match checked {
        Judged::Right(proof) => {
            held.settle_success(&txn).await?;
            txn.commit().await?;
            Ok(Checked::Right(proof))
        }
        // An expired text code compared nothing: it is not counted.
        Judged::ExpiredUncompared => Ok(expired()),
        Judged::Refused(refused) => {
            if let Err(error) = count_and_commit(held, txn).await {
                // A wrong code was compared: it counts even when writing its count failed.
                count_apart(state, account).await?;
                return Err(error);
            }
            Ok(refused)
        }
    }
}

/// Counts the wrong answer `held` let through and commits `txn`, which holds it.
async fn count_and_commit(held: attempts::Held, txn: DatabaseTransaction) -> Result<()> {
    held.count_failure(&txn).await?;
    txn.commit().await?;
    Ok(())
}

/// Counts a guess of `account` in a transaction of its own, after the one that held it failed.
async fn count_apart(state: &AppState, account: &user::Model) -> Result<()> {
    if let Ok(reservation) = reserve_guess(state, account).await? {
        drop(reservation);
    }
    Ok(())
}

/// What a person is told while their guesses must wait.
fn too_many_guesses(retry_after_secs: u64) -> String {
    format!("Too many wrong codes. {}", try_again_in(retry_after_secs))
}

/// What comparing an answer found, before the transaction ends.
enum Judged {
    Right(Proof),
    /// Only an expired sent code was there to compare with: nothing was compared.
    ExpiredUncompared,
    Refused(Checked),
}

/// Compares `answer` with every candidate on `txn`, taking what a right answer uses up.
async fn judge(
    state: &AppState,
    txn: &DatabaseTransaction,
    account: &user::Model,
    answer: &str,
    candidates: Candidates<'_>,
) -> Result<Judged> {
    if answer.len() > LONGEST_ANSWER {
        return Ok(Judged::Refused(wrong(false)));
    }
    let mut sent_outcome = None;
    if let Some(SentAnswer { sent, binding }) = candidates.sent {
        let outcome = sent.answer(&state.secret, binding, answer, chrono::Utc::now());
        if outcome == Answer::Right {
            return Ok(Judged::Right(Proof::SentCode));
        }
        sent_outcome = Some(outcome);
    }
    let mut replayed = false;
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
    for device in candidates.totp {
        let digits = Digits::from_count(device.digits);
        let Some(code) = normalise_code(answer, digits) else { continue };
        let Some(sealed) = device.secret_sealed.as_deref() else { continue };
        let secret = TotpSecret::open(&state.secret, device.user_id, sealed)?;
        if let Some(step) = secret.matching_step(digits, &code, now) {
            if otp_devices::take_totp_step(txn, device, step).await? {
                return Ok(Judged::Right(Proof::Totp(device.id)));
            }
            replayed = true;
        }
    }
    if !candidates.recovery.is_empty()
        && let Some(code) = recovery::normalise(answer)
        && let Some(device) = otp_devices::take_recovery_code(txn, &state.secret, account.id, candidates.recovery, &code).await?
    {
        return Ok(Judged::Right(Proof::RecoveryCode(device)));
    }
    let compared_others = !candidates.totp.is_empty() || !candidates.recovery.is_empty();
    if sent_outcome == Some(Answer::Expired) && !compared_others {
        return Ok(Judged::ExpiredUncompared);
    }
    let spent = matches!(sent_outcome, Some(Answer::WrongAndSpent | Answer::Expired));
    if replayed {
        return Ok(Judged::Refused(Checked::Refused {
            message: "This code was used already; wait for the next one from your app.".into(),
            new_code_needed: spent,
        }));
    }
    if sent_outcome == Some(Answer::Expired) {
        return Ok(Judged::Refused(expired()));
    }
    Ok(Judged::Refused(wrong(spent)))
}

fn expired() -> Checked {
    Checked::Refused { message: "This code has expired; a new code is needed.".into(), new_code_needed: true }
}

fn wrong(spent: bool) -> Checked {
    if spent {
        Checked::Refused { message: "Code does not match; too many wrong answers, so a new code is needed.".into(), new_code_needed: true }
    } else {
        Checked::Refused { message: "Code does not match.".into(), new_code_needed: false }
    }
}

/// Judges the first code of a new authenticator app during its setup, counted like any other
/// answer: the time step it matched, or why not. The check runs to its end even when the caller
/// stops waiting ([`attempts::run_to_end`]).
pub async fn check_new_totp(
    state: &AppState,
    account: &user::Model,
    secret: &TotpSecret,
    digits: Digits,
    answer: &str,
) -> Result<std::result::Result<u64, String>> {
    let (state, account, secret, answer) = (state.clone(), account.clone(), secret.clone(), answer.to_owned());
    attempts::run_to_end(async move {
        let reservation = match reserve_guess(&state, &account).await? {
            Ok(reservation) => reservation,
            Err(message) => return Ok(Err(message)),
        };
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default();
        match normalise_code(&answer, digits).and_then(|code| secret.matching_step(digits, &code, now)) {
            Some(step) => {
                reservation.settle_success(&state.db).await?;
                Ok(Ok(step))
            }
            None => {
                drop(reservation);
                Ok(Err("Code does not match.".into()))
            }
        }
    })
    .await
}
