//! Password hashing and rules.
//!
//! New hashes are argon2id PHC strings with OWASP's parameters. Hashes imported from Django
//! (`pbkdf2_sha256$...`) verify too, and any hash that is not current is replaced at the next
//! successful sign-in.

use std::cell::RefCell;

use argon2::password_hash::rand_core::OsRng;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::Sha256;

use crate::config::PasswordConfig;
use crate::error::{Error, Result};
use crate::secret::constant_time_eq;

/// OWASP's argon2id parameters: 19 MiB, two passes, one lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const PARALLELISM: u32 = 1;

/// The longest accepted password; long enough for any passphrase, short enough to bound cost.
pub const MAX_LENGTH: usize = 1024;

/// Django's PBKDF2 iteration counts stay far below this; anything above is refused as hostile.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// A password in memory: never printed, never logged.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(********)")
    }
}

impl Password {
    /// Wraps a password as given, without trimming or normalising: comparison is exact.
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The password text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("constant parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

thread_local! {
    /// argon2's working memory, kept per thread: allocating and faulting in 19 MiB for every
    /// hash costs about as much as the hash itself.
    static WORKING_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs argon2 into `out` with this thread's reusable working memory.
fn compute(argon: &Argon2<'_>, block_count: usize, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    WORKING_MEMORY.with(|cell| {
        let mut blocks = cell.borrow_mut();
        if blocks.len() < block_count {
            blocks.resize(block_count, Block::default());
        }
        argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..block_count])
    })
}

/// Hashes a password with argon2id into a PHC string; CPU-bound, call through
/// [`PasswordWork::hash`] from async code.
pub fn hash(password: &Password) -> Result<String> {
    let argon = hasher();
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut OsRng, &mut salt);
    let mut out = [0u8; 32];
    compute(&argon, argon.params().block_count(), password.expose().as_bytes(), &salt, &mut out)
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))?;
    Ok(format!(
        "$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={PARALLELISM}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

/// Verifies a PHC-encoded argon2 hash (any variant and parameters).
fn verify_argon2(password: &Password, parsed: &PasswordHash<'_>) -> bool {
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let Ok(params) = Params::try_from(parsed) else { return false };
    let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or(Version::V0x13);
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let expected = expected.as_bytes();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    compute(&argon, argon.params().block_count(), password.expose().as_bytes(), salt, &mut out).is_ok() && constant_time_eq(&out, expected)
}

/// Password work runs on one dedicated thread per core. More would not finish sooner: hashes
/// would thrash the caches (19 MiB each) and a burst of sign-ins could take memory without
/// bound. Each thread keeps its argon2 working memory, so it stays mapped and warm.
struct HashPool {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

fn hash_pool() -> &'static HashPool {
    static POOL: std::sync::OnceLock<HashPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        for index in 0..threads {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new().name(format!("password-{index}")).spawn(move || {
                yield_to_request_threads();
                loop {
                    let job = match receiver.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password thread");
            }
        }
        HashPool { jobs: std::sync::Mutex::new(sender) }
    })
}

/// How much lower than the rest of the server the password threads run (a niceness step).
#[cfg(target_os = "linux")]
const PASSWORD_THREAD_NICENESS_STEP: i32 = 10;

/// Lowers the calling thread's priority below the server's other threads. A hash holds a core
/// for milliseconds while each of a request's other steps (a statement, a hand-off, writing the
/// answer) needs it for microseconds; at equal priority those steps wait behind hashes, every
/// sign-in in flight is held up with them, and a flood of sign-ins slows every other request.
/// Measured with API-key requests beside a sign-in flood: 1.6 to 1.9 times the requests per
/// second, a lower p99, a third fewer sign-ins (README, "Password work is bounded").
fn yield_to_request_threads() {
    #[cfg(target_os = "linux")]
    {
        // On Linux a thread id given to setpriority names that thread alone.
        let this_thread = rustix::thread::gettid();
        let lowered = rustix::process::getpriority_process(Some(this_thread))
            .and_then(|now| rustix::process::setpriority_process(Some(this_thread), (now + PASSWORD_THREAD_NICENESS_STEP).min(19)));
        if let Err(error) = lowered {
            tracing::warn!(%error, "cannot lower the password threads' priority; they compete with requests as equals");
        }
    }
}

/// Runs CPU-bound password work on the password threads and waits for it without blocking.
async fn run_on_password_threads<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = done.send(work());
    });
    hash_pool().jobs.lock().map_err(|_| Error::internal("password pool poisoned"))?.send(job).map_err(Error::internal)?;
    result.await.map_err(Error::internal)
}

/// Admission to the password threads for one server: as many checks as there are threads run,
/// `queue` more wait, and any further one is refused at once with [`Error::Overloaded`], so a
/// burst of sign-ins costs bounded memory and answers quickly instead of queueing without end.
#[derive(Debug)]
pub struct PasswordWork {
    permits: tokio::sync::Semaphore,
}

impl PasswordWork {
    /// Admission for the password threads with `queue` waiting places.
    pub fn new(queue: usize) -> Self {
        let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        Self { permits: tokio::sync::Semaphore::new(threads + queue) }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let Ok(_permit) = self.permits.try_acquire() else {
            metrics::counter!("gatehouse_password_checks_refused_total").increment(1);
            return Err(Error::Overloaded { retry_after_secs: 1 });
        };
        run_on_password_threads(work).await
    }

    /// [`hash`] on the password threads.
    pub async fn hash(&self, password: Password) -> Result<String> {
        self.run(move || hash(&password)).await?
    }

    /// [`verify`] on the password threads.
    pub async fn verify(&self, password: Password, stored: String) -> Result<Verification> {
        self.run(move || verify(&password, &stored)).await
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Wrong password, or a hash that cannot be read.
    Mismatch,
    /// Right password, current hash.
    Match,
    /// Right password, but the hash should be replaced by a current one.
    MatchNeedsRehash,
}

/// Checks a password against a stored hash in time independent of where they differ.
pub fn verify(password: &Password, stored: &str) -> Verification {
    if stored.starts_with("pbkdf2_sha256$") {
        return if verify_django_pbkdf2(password, stored) { Verification::MatchNeedsRehash } else { Verification::Mismatch };
    }
    let Ok(parsed) = PasswordHash::new(stored) else { return Verification::Mismatch };
    if !verify_argon2(password, &parsed) {
        return Verification::Mismatch;
    }
    let current = parsed.algorithm == Algorithm::Argon2id.ident()
        && Params::try_from(&parsed)
            .map(|p| p.m_cost() == MEMORY_KIB && p.t_cost() == ITERATIONS && p.p_cost() == PARALLELISM)
            .unwrap_or(false);
    if current { Verification::Match } else { Verification::MatchNeedsRehash }
}

/// Verifies Django's `pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`.
fn verify_django_pbkdf2(password: &Password, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(_), Some(iterations), Some(salt), Some(expected), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(iterations) = iterations.parse::<u32>() else { return false };
    if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
        return false;
    }
    let Ok(expected) = STANDARD.decode(expected) else { return false };
    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.expose().as_bytes(), salt.as_bytes(), iterations, &mut derived);
    constant_time_eq(&derived, &expected)
}

/// A hash to verify against when an account does not exist, so that unknown accounts cost what
/// known ones cost. Its password was random and discarded; nothing is ever accepted against it,
/// because an unknown account fails whatever the verification says.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$9AWXELayhQSx1LxO9caVoA$/3EnERmQIHDMjdq6xO0Ik4w48QS/b5H/ptJAFV9dDu4";

/// Checks a new password against the configured rules. `context` holds words the password must
/// not be built from (the user's e-mail, username and name).
pub fn check_policy(rules: &PasswordConfig, password: &Password, context: &[&str]) -> Result<(), Vec<String>> {
    let text = password.expose();
    let length = text.chars().count();
    let mut problems = Vec::new();
    if length < rules.min_length {
        problems.push(format!("This password is too short. It must contain at least {} characters.", rules.min_length));
    }
    if length > MAX_LENGTH {
        problems.push(format!("This password is too long. It must contain at most {MAX_LENGTH} characters."));
    }
    if problems.is_empty() && rules.reject_common {
        // The estimator's cost grows with length; the first 100 characters decide.
        let sample: String = text.chars().take(100).collect();
        let estimate = zxcvbn::zxcvbn(&sample, context);
        if u8::from(estimate.score()) < 2 {
            problems.push("This password is too common or too easy to guess.".to_owned());
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;

    /// The password threads run below the threads that call them.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn password_threads_run_below_the_threads_that_hand_them_work() {
        let niceness = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("own niceness");
        let caller = niceness();
        let worker = run_on_password_threads(niceness).await.expect("ran on a password thread");
        assert_eq!(worker, (caller + PASSWORD_THREAD_NICENESS_STEP).min(19));
    }

    fn rules() -> PasswordConfig {
        PasswordConfig { min_length: 8, reject_common: true, hash_queue: 64 }
    }

    #[test]
    fn argon2id_round_trip_with_owasp_parameters() {
        let password = Password::new("correct horse battery staple".into());
        let stored = hash(&password).unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert_eq!(verify(&password, &stored), Verification::Match);
        assert_eq!(verify(&Password::new("correct horse battery stapl".into()), &stored), Verification::Mismatch);
        // The PHC string is the standard one: the reference implementation verifies it.
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(argon2::PasswordVerifier::verify_password(&hasher(), password.expose().as_bytes(), &parsed).is_ok());
    }

    #[test]
    fn weaker_argon2_parameters_ask_for_rehash() {
        let password = Password::new("correct horse battery staple".into());
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 1, 1, None).unwrap())
            .hash_password(password.expose().as_bytes(), &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert_eq!(verify(&password, &weak), Verification::MatchNeedsRehash);
    }

    #[test]
    fn django_pbkdf2_hashes_verify_and_ask_for_rehash() {
        // Produced by Django 5's PBKDF2PasswordHasher for "hunter2hunter2" with salt "seasalt".
        let password = Password::new("hunter2hunter2".into());
        let mut derived = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"hunter2hunter2", b"seasalt", 1000, &mut derived);
        let stored = format!("pbkdf2_sha256$1000$seasalt${}", STANDARD.encode(derived));
        assert_eq!(verify(&password, &stored), Verification::MatchNeedsRehash);
        assert_eq!(verify(&Password::new("hunter2".into()), &stored), Verification::Mismatch);
        for broken in ["pbkdf2_sha256$x$salt$abc", "pbkdf2_sha256$1000$salt", "pbkdf2_sha256$0$s$AAAA", "pbkdf2_sha256$99999999999$s$AAAA"]
        {
            assert_eq!(verify(&password, broken), Verification::Mismatch, "{broken}");
        }
    }

    #[test]
    fn garbage_hashes_never_match() {
        let password = Password::new("anything at all".into());
        for stored in ["", "!", "$argon2id$", "plain-text"] {
            assert_eq!(verify(&password, stored), Verification::Mismatch);
        }
    }

    #[test]
    fn policy_checks_length_and_common_passwords() {
        assert!(check_policy(&rules(), &Password::new("Tr0ub4dor&3-horse-staple".into()), &[]).is_ok());
        let short = check_policy(&rules(), &Password::new("a1b2".into()), &[]).unwrap_err();
        assert!(short[0].contains("at least 8"));
        let common = check_policy(&rules(), &Password::new("password1".into()), &[]).unwrap_err();
        assert!(common[0].contains("too common"));
        let own_email = check_policy(&rules(), &Password::new("alice@example.com".into()), &["alice@example.com"]).unwrap_err();
        assert!(own_email[0].contains("too common"));
        let long = "x".repeat(64) + "-long passphrase with many words in it";
        assert!(check_policy(&rules(), &Password::new(long), &[]).is_ok(), "64+ characters must be allowed");
        assert!(check_policy(&rules(), &Password::new("y".repeat(MAX_LENGTH + 1)), &[]).is_err());
    }

    #[test]
    fn dummy_hash_has_current_parameters() {
        // Same parameters as real hashes, so that unknown accounts take as long as known ones.
        assert_eq!(verify(&Password::new("anything".into()), DUMMY_HASH), Verification::Mismatch);
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (MEMORY_KIB, ITERATIONS, PARALLELISM));
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert_eq!(format!("{:?}", Password::new("hunter2".into())), "Password(********)");
    }
}
