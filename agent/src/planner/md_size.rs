//! What an md array holds, from its level, its members and their smallest size.
//!
//! A lower bound: md keeps a superblock, a write-intent bitmap and (metadata 1.2)
//! headroom for reshapes on every member, sized by the mdadm version at hand, so the
//! planner takes the most any supported mdadm takes. Striped levels then use whole
//! chunks of each member (md rounds a member down to its chunk size), and the array
//! holds the level's share of the members: RAID0 n, RAID1 1, RAID5 n−1, RAID6 n−2,
//! RAID10 (near-2) n/2, the last in whole chunks as md's raid10 computes it.

use crate::kinds::{MdMetadata, RaidLevel};
use crate::units::{KIB, MIB};

/// The chunk size mdadm chooses when none is given (since mdadm 3.1), and the one the
/// plan states for a striped level the document gives none for.
pub(super) const DEFAULT_CHUNK: u64 = 512 * KIB;

/// What md may take on each member: superblock and bitmap (8 MiB covers both), and for
/// metadata 1.2 the data offset mdadm leaves for reshapes (up to 128 MiB, a 512th of the
/// member below that).
fn member_overhead(smallest: u64, metadata: MdMetadata) -> u64 {
    match metadata {
        MdMetadata::V1_0 => 8 * MIB,
        MdMetadata::V1_2 => 8 * MIB + (smallest / 512).min(128 * MIB),
    }
}

/// The array's usable bytes (a lower bound): `members` partitions of which the smallest
/// has `smallest` bytes, at `level`, `chunk` bytes per chunk where the level stripes.
pub(super) fn usable(
    level: RaidLevel,
    members: u64,
    smallest: u64,
    metadata: MdMetadata,
    chunk: u64,
) -> u64 {
    let per_member = smallest.saturating_sub(member_overhead(smallest, metadata));
    let (num, den) = level.data_fraction(members);
    if !level.striped() {
        return per_member * num / den;
    }
    let chunk = chunk.max(1);
    let chunks = u128::from(per_member / chunk);
    let total = chunks * u128::from(num) / u128::from(den);
    u64::try_from(total * u128::from(chunk)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::GIB;

    const M12: MdMetadata = MdMetadata::V1_2;

    /// Each member's data area at metadata 1.2 for a 10 GiB member, whole 512 KiB chunks.
    fn data_10g() -> u64 {
        let d = 10 * GIB - 8 * MIB - (10 * GIB / 512);
        d / DEFAULT_CHUNK * DEFAULT_CHUNK
    }

    #[test]
    fn raid1_holds_one_member_whatever_the_count() {
        let one = usable(RaidLevel::Raid1, 2, 10 * GIB, M12, DEFAULT_CHUNK);
        assert_eq!(one, 10 * GIB - 8 * MIB - 20 * MIB);
        assert_eq!(
            usable(RaidLevel::Raid1, 4, 10 * GIB, M12, DEFAULT_CHUNK),
            one
        );
        // The /boot mirror's superblock at the end: 8 MiB less, no headroom.
        assert_eq!(
            usable(RaidLevel::Raid1, 4, GIB, MdMetadata::V1_0, DEFAULT_CHUNK),
            GIB - 8 * MIB
        );
    }

    #[test]
    fn raid0_holds_every_member() {
        for n in 2..=6 {
            assert_eq!(
                usable(RaidLevel::Raid0, n, 10 * GIB, M12, DEFAULT_CHUNK),
                n * data_10g()
            );
        }
    }

    #[test]
    fn raid5_gives_one_member_to_parity_and_raid6_two() {
        for n in 3..=6 {
            assert_eq!(
                usable(RaidLevel::Raid5, n, 10 * GIB, M12, DEFAULT_CHUNK),
                (n - 1) * data_10g()
            );
        }
        for n in 4..=6 {
            assert_eq!(
                usable(RaidLevel::Raid6, n, 10 * GIB, M12, DEFAULT_CHUNK),
                (n - 2) * data_10g()
            );
        }
    }

    #[test]
    fn raid10_near2_holds_half_of_the_members_in_whole_chunks() {
        assert_eq!(
            usable(RaidLevel::Raid10, 4, 10 * GIB, M12, DEFAULT_CHUNK),
            2 * data_10g()
        );
        // Five members: md's raid10 counts whole chunks, n × chunks / 2 rounded down.
        let chunks = data_10g() / DEFAULT_CHUNK;
        assert_eq!(
            usable(RaidLevel::Raid10, 5, 10 * GIB, M12, DEFAULT_CHUNK),
            chunks * 5 / 2 * DEFAULT_CHUNK
        );
    }

    #[test]
    fn a_striped_member_is_used_in_whole_chunks() {
        // A member whose data area ends 1 MiB into a 4 MiB chunk loses that MiB.
        let smallest = 8 * MIB + 13 * MIB; // 1.0: 13 MiB of data
        let per = usable(RaidLevel::Raid0, 1, smallest, MdMetadata::V1_0, 4 * MIB);
        assert_eq!(per, 12 * MIB);
        assert_eq!(
            usable(RaidLevel::Raid0, 3, smallest, MdMetadata::V1_0, 4 * MIB),
            36 * MIB
        );
        // RAID1 does not stripe: every byte of the data area.
        assert_eq!(
            usable(RaidLevel::Raid1, 2, smallest, MdMetadata::V1_0, 4 * MIB),
            13 * MIB
        );
    }

    #[test]
    fn members_smaller_than_the_overhead_hold_nothing() {
        for level in RaidLevel::ALL {
            assert_eq!(usable(level, 4, 4 * MIB, M12, DEFAULT_CHUNK), 0, "{level}");
        }
    }
}
