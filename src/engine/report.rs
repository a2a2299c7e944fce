//! Progress reporting as a trait: the engine says what happens, the CLI decides how to show it.

use crate::model::Descriptor;

/// Receives progress from the engine; called from several threads at once. Every method has
/// a do-nothing default so a reporter implements only what it shows.
pub trait Reporter: Sync {
    /// A phase begins ("hashing", "writing"), with how much work it holds.
    fn phase(&self, _name: &str, _items: u64, _bytes: u64) {}
    /// Bytes moved or hashed since the last call.
    fn bytes(&self, _count: u64) {}
    /// A blob transfer starts (it ends with [`Reporter::item_done`]).
    fn item_started(&self, _descriptor: &Descriptor) {}
    /// A blob or manifest is finished; `skipped` when the destination already had it.
    fn item_done(&self, _descriptor: &Descriptor, _skipped: bool) {}
    /// Something the user should know that does not stop the work.
    fn warn(&self, _message: &str) {}
}

/// A reporter that shows nothing.
pub struct NoReport;

impl Reporter for NoReport {}
