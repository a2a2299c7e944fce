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
            let outcome =
                if skip { Ok(Ok(Vec::new())) } else { catch_unwind(AssertUnwindSafe(|| self.more.more(&ask.owner, &ask.manifest))) };
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
