use super::*;

/// A clock that only pretends to sleep, and hands out given jitter fractions.
struct FakeClock {
    now: Duration,
    slept: Vec<Duration>,
    fraction: f64,
}

impl FakeClock {
    fn new(fraction: f64) -> FakeClock {
        FakeClock {
            now: Duration::ZERO,
            slept: Vec::new(),
            fraction,
        }
    }
}

impl Clock for FakeClock {
    fn elapsed(&self) -> Duration {
        self.now
    }
    fn sleep(&mut self, d: Duration) {
        self.now += d;
        self.slept.push(d);
    }
    fn fraction(&mut self) -> f64 {
        self.fraction
    }
}

const URL: &str = "http://prov.example/lookup";

fn status(status: u16, retry_after: Option<&str>) -> Answer {
    Answer::Status {
        status,
        retry_after: retry_after.map(str::to_string),
        body: format!("body of {status}"),
    }
}

fn document(location: Option<&str>) -> Answer {
    Answer::Document {
        body: b"version: 1\n".to_vec(),
        location: location.map(str::to_string),
    }
}

/// Runs a lookup against scripted answers (the last one repeats).
fn run(answers: Vec<Answer>, policy: Policy, clock: &mut FakeClock) -> Result<Found, LookupError> {
    let mut i = 0;
    let mut ask = || {
        let a = answers[i.min(answers.len() - 1)].clone();
        i += 1;
        a
    };
    Lookup { url: URL, policy }.run(&mut ask, clock)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn each_status_maps_to_its_action() {
    let p = Policy::default();
    assert_eq!(next_step(&document(None), 0, 0.0, &p), Step::Done);
    for s in [202, 404] {
        assert_eq!(
            next_step(&status(s, Some("40")), 0, 0.0, &p),
            Step::Wait {
                delay: secs(40),
                why: format!("the server has no document for this machine yet ({s})")
            }
        );
    }
    assert_eq!(next_step(&status(410, None), 0, 0.0, &p), Step::Retire);
    for s in [500, 502, 503] {
        assert!(matches!(
            next_step(&status(s, None), 2, 0.0, &p),
            Step::Wait { delay, .. } if delay == secs(4)
        ));
    }
    assert!(matches!(
        next_step(&Answer::Unreachable("refused".into()), 0, 0.0, &p),
        Step::Wait { delay, ref why } if delay == secs(1) && why.contains("refused")
    ));
    for s in [400, 401, 403, 409, 422] {
        assert_eq!(
            next_step(&status(s, None), 0, 0.0, &p),
            Step::Refuse {
                status: s,
                body: format!("body of {s}")
            }
        );
    }
}

#[test]
fn retry_after_is_clamped_and_defaults_to_30_s() {
    let p = Policy::default();
    assert_eq!(retry_after(Some("1"), &p), secs(5));
    assert_eq!(retry_after(Some(" 120 "), &p), secs(120));
    assert_eq!(retry_after(Some("86400"), &p), secs(600));
    assert_eq!(retry_after(None, &p), secs(30));
    assert_eq!(
        retry_after(Some("Wed, 21 Oct 2026 07:28:00 GMT"), &p),
        secs(30),
        "the date form is not used"
    );
    assert_eq!(retry_after(Some("-3"), &p), secs(30));
    let tests = Policy {
        min_wait: secs(1),
        ..p
    };
    assert_eq!(retry_after(Some("1"), &tests), secs(1));
}

#[test]
fn jitter_adds_up_to_a_quarter() {
    assert_eq!(with_jitter(secs(40), 0.0), secs(40));
    assert_eq!(with_jitter(secs(40), 0.5), secs(45));
    assert!(with_jitter(secs(40), 0.999_999) < secs(50));
    assert_eq!(with_jitter(secs(40), 7.0), secs(50), "clamped");
    let mut c = RealClock::start();
    let draws: Vec<f64> = (0..64).map(|_| c.fraction()).collect();
    assert!(draws.iter().all(|f| (0.0..1.0).contains(f)), "{draws:?}");
    assert!(
        draws.windows(2).any(|w| w[0] != w[1]),
        "the random source gives one value: {draws:?}"
    );
}

#[test]
fn backoff_doubles_from_1_s_to_60_s() {
    let got: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(got, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff(u32::MAX), secs(60));
}

#[test]
fn two_202s_then_a_document() {
    let mut c = FakeClock::new(0.2);
    let found = run(
        vec![
            status(202, Some("10")),
            status(202, None),
            document(Some("/docs/web-01.yaml")),
        ],
        Policy::default(),
        &mut c,
    )
    .unwrap();
    assert_eq!(found.text, "version: 1\n");
    assert_eq!(
        found.location.as_deref(),
        Some("http://prov.example/docs/web-01.yaml"),
        "resolved against the lookup URL"
    );
    assert_eq!(c.slept, [secs(10).mul_f64(1.05), secs(30).mul_f64(1.05)]);
}

#[test]
fn errors_back_off_and_a_202_resets_the_backoff() {
    let mut c = FakeClock::new(0.0);
    let down = Answer::Unreachable("connection refused".into());
    run(
        vec![
            down.clone(),
            status(503, None),
            down.clone(),
            status(202, Some("5")),
            down,
            document(None),
        ],
        Policy::default(),
        &mut c,
    )
    .unwrap();
    assert_eq!(c.slept, [secs(1), secs(2), secs(4), secs(5), secs(1)]);
}

#[test]
fn the_timeout_bounds_the_whole_lookup() {
    let mut c = FakeClock::new(0.0);
    let policy = Policy {
        timeout: secs(100),
        ..Policy::default()
    };
    let e = run(vec![status(202, Some("30"))], policy, &mut c).unwrap_err();
    // 30 + 30 + 30, then the last wait cut to the bound, then one last question.
    assert_eq!(c.slept, [secs(30), secs(30), secs(30), secs(10)]);
    assert_eq!(c.now, secs(100));
    let msg = e.to_string();
    assert!(
        msg.contains(URL)
            && msg.contains("100 s")
            && msg.contains("(202)")
            && msg.contains("imprint.lookup_timeout="),
        "{msg}"
    );
    let mut c = FakeClock::new(0.0);
    assert!(matches!(
        run(vec![Answer::Unreachable("refused".into())], policy, &mut c),
        Err(LookupError::TimedOut { .. })
    ));
    assert!(c.slept.iter().all(|d| *d <= secs(60)));
    assert_eq!(c.now, secs(100));
}

#[test]
fn retired_and_refused_end_at_once() {
    let mut c = FakeClock::new(0.0);
    let e = run(vec![status(410, None)], Policy::default(), &mut c).unwrap_err();
    assert!(matches!(e, LookupError::Retired { .. }), "{e}");
    assert!(e.to_string().contains("retired this machine"), "{e}");
    let e = run(vec![status(403, None)], Policy::default(), &mut c).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("HTTP 403") && msg.contains("body of 403") && msg.contains(URL),
        "{msg}"
    );
    assert!(c.slept.is_empty());
}

#[test]
fn a_document_that_is_not_text_is_an_error() {
    let mut c = FakeClock::new(0.0);
    let bin = Answer::Document {
        body: vec![0xff, 0xfe],
        location: None,
    };
    assert!(matches!(
        run(vec![bin], Policy::default(), &mut c),
        Err(LookupError::NotText { .. })
    ));
}
