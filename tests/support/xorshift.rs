//! A small deterministic generator (xorshift64*) for seeded property and mutation tests, so a
//! failure names a seed that replays it. Shared by the integration tests (by path) and the
//! library's own property tests.

// Each user takes only the methods it needs.
#![allow(dead_code)]

/// The generator; see the module documentation.
pub struct Prng(u64);

impl Prng {
    /// The generator of case number `seed` (never the all-zero state).
    pub fn seeded(seed: u64) -> Self {
        Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
