//! The CLI's allocator: its first mebibyte comes from a zeroed static region, handed out in
//! order and never reused, then the system's allocator takes over. A command allocates a
//! few hundred kilobytes (clap's command tree, the runtime, the connection's buffers) and
//! exits. musl's allocator maps and unmaps pages for them, and the system calls, page
//! faults and TLB flushes that follow were a tenth of `berth list` (issue 17); packed in
//! one region they touch fewer pages and cost no system call. A long command (`events`,
//! an attached terminal) frees what it no longer needs once it is past the region, so what
//! never comes back is bounded by the region's size.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::UnsafeCell,
    sync::atomic::{AtomicUsize, Ordering},
};

const SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct Region(UnsafeCell<[u8; SIZE]>);

// SAFETY: bytes of the region are handed out once each, by the atomic `next` below, so no
// two users ever share one.
unsafe impl Sync for Region {}

pub struct Arena {
    region: Region,
    /// Offset of the first byte never handed out.
    next: AtomicUsize,
}

impl Arena {
    pub const fn new() -> Self {
        Self {
            region: Region(UnsafeCell::new([0; SIZE])),
            next: AtomicUsize::new(0),
        }
    }

    fn base(&self) -> usize {
        self.region.0.get() as usize
    }

    fn holds(&self, ptr: *mut u8) -> bool {
        (self.base()..self.base() + SIZE).contains(&(ptr as usize))
    }

    /// A block of `layout` from the region, or `None` once it is too full for one.
    fn carve(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base();
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + next).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > SIZE {
                return None;
            }
            match self
                .next
                .compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some((base + start) as *mut u8),
                Err(now) => next = now,
            }
        }
    }
}

// SAFETY: every block is either carved from the region (unique, aligned, `size` bytes, never
// handed out again) or the system allocator's, and each is returned to whichever made it.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.carve(layout) {
            Some(block) => block,
            // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.holds(ptr) {
            // SAFETY: not the region's, so the system allocator made it, with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.holds(ptr) {
            // SAFETY: the system allocator's block, with the caller's layout and size.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // The last block carved grows in place: a Vec or String being built.
        let offset = ptr as usize - self.base();
        let end = offset + layout.size();
        if offset + new_size <= SIZE
            && self
                .next
                .compare_exchange(end, offset + new_size, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return ptr;
        }
        // SAFETY: the alignment is the caller's, valid, and new_size is non-zero (realloc's
        // contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for alloc.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            // SAFETY: both blocks are at least this long, and distinct.
            unsafe { std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size)) };
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_distinct_and_the_last_one_grows_in_place() {
        static ARENA: Arena = Arena::new();
        let arena = &ARENA;
        let layout = Layout::from_size_align(24, 16).unwrap();
        // SAFETY: non-zero layouts; blocks used within their sizes.
        unsafe {
            let first = arena.alloc(layout);
            let second = arena.alloc(layout);
            assert!(arena.holds(first) && arena.holds(second));
            assert_eq!(second as usize % 16, 0);
            assert!(second as usize >= first as usize + 24);
            second.write_bytes(7, 24);
            let grown = arena.realloc(second, layout, 4000);
            assert_eq!(grown, second);
            assert_eq!(*grown.add(23), 7);
            // Not the last one any more: it moves, its bytes with it.
            first.write_bytes(9, 24);
            let moved = arena.realloc(first, layout, 48);
            assert_ne!(moved, first);
            assert_eq!(*moved.add(23), 9);
        }
    }

    #[test]
    fn the_system_takes_over_when_the_region_is_full() {
        static ARENA: Arena = Arena::new();
        let arena = &ARENA;
        let big = Layout::from_size_align(SIZE - 64, 8).unwrap();
        let small = Layout::from_size_align(128, 8).unwrap();
        // SAFETY: non-zero layouts; each block returned with its own layout.
        unsafe {
            let most = arena.alloc(big);
            assert!(arena.holds(most));
            let outside = arena.alloc(small);
            assert!(!outside.is_null() && !arena.holds(outside));
            outside.write_bytes(1, 128);
            let grown = arena.realloc(outside, small, 1 << 16);
            assert!(!arena.holds(grown));
            arena.dealloc(grown, Layout::from_size_align(1 << 16, 8).unwrap());
            arena.dealloc(most, big);
        }
    }
}
