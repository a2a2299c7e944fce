//! Work beside a walk: the [`MoreArtifacts`] hook (the referrers of each manifest, spec/archive.md
//! AR-RF1, passed in by ops so the engine knows nothing of them) and the bounded pool of
//! workers that asks it about each manifest as soon as the walk knows that manifest, while the
//! walk fetches the rest (issue 15: discovery costs requests per artifact, so they run
//! concurrently with the manifest walk instead of after it).
//!
//! Answers are handed back in the order the walk asked, whatever order they arrive in, so the
//! graph (and the archive written from it) is the same however fast each lookup is.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::Scope;

use super::walk::{Artifact, Problem};
use crate::model::Digest;

/// More top-level artifacts for a walk: asked about every manifest the walk fetches, as soon
/// as it is known, on a worker beside the walk.
pub trait MoreArtifacts: Sync {
    /// The artifacts `manifest` brings in (its referrers), or a problem that ends the walk.
    /// `owner` is the top-level artifact through which the walk first reached it.
    fn more(&self, owner: &Artifact, manifest: &Digest) -> Result<Vec<Artifact>, Problem>;

    /// Every `more` asked so far has answered, and the walk is about to walk what they gave:
    /// what they learned may now be relied on by the next ones (their answers do not depend
    /// on which of them ran first).
    fn settle(&self) {}
}

/// One question for a worker.
struct Ask {
    owner: Artifact,
    manifest: Digest,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<(usize, Ask)>,
    /// Questions asked since the last [`Beside::answers`].
    asked: usize,
    answers: BTreeMap<usize, Result<Vec<Artifact>, Problem>>,
    /// A question failed, or the walk gave up: questions not yet started are skipped.
    skip: bool,
    /// No more questions will come: idle workers leave.
    closed: bool,
    /// A question that panicked, re-raised on the walk's thread by [`Beside::answers`].
    panic: Option<Box<dyn std::any::Any + Send>>,
}

/// The workers answering [`MoreArtifacts`] beside a walk; see the module documentation.
pub(super) struct Beside<'a> {
    more: &'a dyn MoreArtifacts,
    state: Mutex<State>,
    /// Signals a question waiting or the pool closing.
    asked: Condvar,
    /// Signals an answer recorded.
    answered: Condvar,
}

impl<'a> Beside<'a> {
    pub(super) fn new(more: &'a dyn MoreArtifacts) -> Self {
        Beside { more, state: Mutex::new(State::default()), asked: Condvar::new(), answered: Condvar::new() }
    }

    /// Starts `workers` workers in `scope`; they run until the returned guard is dropped
    /// (which the scope's end waits for, so it must be dropped inside the scope, panic or not).
    pub(super) fn start<'scope>(&'scope self, scope: &'scope Scope<'scope, '_>, workers: usize) -> Closing<'scope, 'a> {
        for _ in 0..workers.max(1) {
            scope.spawn(|| self.work());
        }
        Closing(self)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Questions run outside the lock and their panics are caught, so nothing panics while
        // holding it; should it, the state is still whole (every change is one assignment).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks about `manifest`, reached through `owner`.
    pub(super) fn ask(&self, owner: &Artifact, manifest: Digest) {
        let mut state = self.lock();
        let index = state.asked;
        state.asked += 1;
        state.waiting.push_back((index, Ask { owner: owner.clone(), manifest }));
        self.asked.notify_one();
    }

    /// Waits for every question asked since the last call, and returns the answers in the
    /// order asked (questions skipped after a failure answer with nothing).
    pub(super) fn answers(&self) -> Vec<Result<Vec<Artifact>, Problem>> {
        let mut state = self.lock();
        while state.answers.len() < state.asked {
            state = self.answered.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if let Some(panic) = state.panic.take() {
            drop(state);
            resume_unwind(panic);
        }
        state.asked = 0;
        let answers = std::mem::take(&mut state.answers).into_values().collect();
        drop(state);
        self.more.settle();
        answers
    }

    /// Skips every question not yet started (the walk failed; its answers would not be used).
    pub(super) fn give_up(&self) {
        let mut state = self.lock();
        state.skip = true;
    }

    /// No more questions: the workers leave once those waiting are answered (or skipped).
    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.skip = true;
        self.asked.notify_all();
    }

    fn work(&self) {
        loop {
            let (index, ask) = {
                let mut state = self.lock();
                loop {
                    if let Some(next) = state.waiting.pop_front() {
                        break next;
                    }
                    if state.closed {
                        return;
                    }
                    state = self.asked.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            };
            let skip = self.lock().skip;
            let outcome = if skip {
                Ok(Ok(Vec::new()))
            } else {
                catch_unwind(AssertUnwindSafe(|| self.more.more(&ask.owner, &ask.manifest)))
            };
            let mut state = self.lock();
            let answer = outcome.unwrap_or_else(|panic| {
                state.panic.get_or_insert(panic);
                Ok(Vec::new())
            });
            // A failure makes the rest pointless: the walk reports it and stops (AR-RF1).
            state.skip |= answer.is_err() || state.panic.is_some();
            state.answers.insert(index, answer);
            self.answered.notify_all();
        }
    }
}

/// Closes a [`Beside`] pool when dropped, so its workers leave and the scope they run in can
/// end, on every way out of the walk.
pub(super) struct Closing<'scope, 'a>(&'scope Beside<'a>);

impl Drop for Closing<'_, '_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::engine::walk::{Graph, WalkOptions, walk_with};
    use crate::model::{Descriptor, media};
    use crate::store::memory::MemorySource;

    fn image(source: &mut MemorySource, seed: u8) -> Descriptor {
        let config = source.insert(vec![b'{', seed, b'}']);
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": Descriptor::new(media::OCI_CONFIG, config, 3), "layers": [],
        }))
        .unwrap();
        let size = bytes.len() as u64;
        Descriptor::new(media::OCI_MANIFEST, source.insert(bytes), size)
    }

    /// An index over six images, and for each of its seven manifests one "referrer" image.
    struct Set {
        source: MemorySource,
        index: Descriptor,
        referrer_of: BTreeMap<Digest, Descriptor>,
    }

    fn set() -> Set {
        let mut source = MemorySource::new();
        let children: Vec<Descriptor> = (0..6).map(|seed| image(&mut source, seed)).collect();
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": children,
        }))
        .unwrap();
        let size = bytes.len() as u64;
        let index = Descriptor::new(media::OCI_INDEX, source.insert(bytes), size);
        let mut referrer_of = BTreeMap::new();
        for (seed, subject) in std::iter::once(&index).chain(&children).enumerate() {
            referrer_of.insert(subject.digest, image(&mut source, 100 + seed as u8));
        }
        Set { source, index, referrer_of }
    }

    /// Gives each subject's referrer after a pause `pause` chooses; fails or panics on request.
    struct Referrers<'a> {
        set: &'a Set,
        pause: fn(usize) -> u64,
        fail_on: Option<Digest>,
        panic_on: Option<Digest>,
    }

    impl MoreArtifacts for Referrers<'_> {
        fn more(&self, _owner: &Artifact, manifest: &Digest) -> Result<Vec<Artifact>, Problem> {
            let Some(position) = self.set.referrer_of.keys().position(|d| d == manifest) else { return Ok(Vec::new()) };
            std::thread::sleep(Duration::from_millis((self.pause)(position)));
            if self.panic_on == Some(*manifest) {
                panic!("a lookup bug");
            }
            if self.fail_on == Some(*manifest) {
                let message = format!("lookup of {manifest} failed");
                return Err(Problem { subject: Some(*manifest), message, integrity: false, details: Vec::new() });
            }
            Ok(vec![Artifact::new(self.set.referrer_of[manifest].clone())])
        }
    }

    fn walk_set(set: &Set, referrers: &Referrers) -> Graph {
        let options = WalkOptions { workers: 3, include_non_distributable: false };
        walk_with(&set.source, vec![Artifact::new(set.index.clone())], &options, referrers)
    }

    fn order(graph: &Graph) -> Vec<Digest> {
        graph.artifacts.iter().map(|a| a.descriptor.digest).collect()
    }

    /// Issue 15: the graph is the same whether the first lookups answer last or first.
    #[test]
    fn answers_are_taken_in_the_order_asked_whatever_their_timing() {
        let set = set();
        let plain: fn(usize) -> u64 = |_| 0;
        let first_slow: fn(usize) -> u64 = |position| 10 * (7 - position as u64);
        let last_slow: fn(usize) -> u64 = |position| 10 * position as u64;
        let graphs: Vec<Graph> = [plain, first_slow, last_slow]
            .into_iter()
            .map(|pause| walk_set(&set, &Referrers { set: &set, pause, fail_on: None, panic_on: None }))
            .collect();
        for graph in &graphs {
            assert!(graph.problems.is_empty(), "{:?}", graph.problems);
            assert_eq!(order(graph), order(&graphs[0]));
            assert_eq!(graph.manifests.keys().collect::<Vec<_>>(), graphs[0].manifests.keys().collect::<Vec<_>>());
        }
        let walked: BTreeSet<Digest> = order(&graphs[0]).into_iter().collect();
        assert!(set.referrer_of.values().all(|referrer| walked.contains(&referrer.digest)));
        assert_eq!(graphs[0].artifacts.len(), 1 + set.referrer_of.len());
    }

    /// A failed lookup ends the walk with its problem, the lookups after it skipped.
    #[test]
    fn a_failed_lookup_is_the_walks_problem() {
        let set = set();
        let subject = *set.referrer_of.keys().next().unwrap();
        let referrers = Referrers {
            set: &set,
            pause: |position| 5 * (7 - position as u64),
            fail_on: Some(subject),
            panic_on: None,
        };
        let graph = walk_set(&set, &referrers);
        assert_eq!(graph.problems.len(), 1, "{:?}", graph.problems);
        assert_eq!(graph.problems[0].subject, Some(subject));
    }

    /// A lookup that panics takes the walk down with it instead of leaving it waiting.
    #[test]
    fn a_panicking_lookup_does_not_hang_the_walk() {
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let set = set();
            let subject = *set.referrer_of.keys().last().unwrap();
            let referrers = Referrers { set: &set, pause: |_| 1, fail_on: None, panic_on: Some(subject) };
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| walk_set(&set, &referrers)));
            let _ = done.send(outcome.is_err());
        });
        let panicked = finished.recv_timeout(Duration::from_secs(20)).expect("the walk ends");
        assert!(panicked, "the lookup's panic reaches the walk's caller");
    }
}
