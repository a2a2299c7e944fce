//! Progress reporting as a trait: the engine says what happens, the CLI decides how to show it.

use crate::model::Descriptor;

/// Receives progress from the engine; called from several threads at once. Every method has
/// a do-nothing default so a reporter implements only what it shows.
pub trait Reporter: Sync {
    /// A phase begins ("hashing", "writing"), with how much work it holds: `items` things
    /// ("81 blobs", "3 volumes") of `bytes` bytes in all (0 when not known in advance).
    fn phase(&self, _name: &str, _items: Items, _bytes: u64) {}
    /// Bytes moved or hashed since the last call.
    fn bytes(&self, _count: u64) {}
    /// A blob transfer starts (it ends with [`Reporter::item_done`]).
    fn item_started(&self, _descriptor: &Descriptor) {}
    /// A blob or manifest is finished; `skipped` when the destination already had it.
    fn item_done(&self, _descriptor: &Descriptor, _skipped: bool) {}
    /// Something the user should know that does not stop the work.
    fn warn(&self, _message: &str) {}
}

/// A count of the things a phase works on, with their name: shown as "81 blobs".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Items {
    pub count: u64,
    pub noun: &'static str,
}

impl Items {
    pub fn blobs(count: usize) -> Self {
        Items { count: count as u64, noun: if count == 1 { "blob" } else { "blobs" } }
    }

    pub fn volumes(count: usize) -> Self {
        Items { count: count as u64, noun: if count == 1 { "volume" } else { "volumes" } }
    }

    /// Nothing counted in advance (a stream).
    pub fn unknown() -> Self {
        Items { count: 0, noun: "" }
    }
}

impl std::fmt::Display for Items {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.count, self.noun)
    }
}

/// A reporter that shows nothing.
pub struct NoReport;

impl Reporter for NoReport {}
