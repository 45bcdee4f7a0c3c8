//! docs/contract.md §3.5: get, list with cursors, metadata merge patches, queue statistics.

mod fixture;

use fixture::{Fixture, ENV, SECOND};
use worklease::{Cursor, ListRequest, MetadataPatch, WorkState};

fn ids(f: &mut Fixture, request: &ListRequest) -> (Vec<String>, bool, Option<String>) {
    let page = f.table.list(ENV, request, f.now).unwrap();
    assert_eq!(page.first_id, page.data.first().map(|i| i.id.clone()));
    assert_eq!(page.last_id, page.data.last().map(|i| i.id.clone()));
    (
        page.data.iter().map(|i| i.id.to_string()).collect(),
        page.has_more,
        page.next_page.map(|p| p.to_string()),
    )
}

#[test]
fn list_pages_through_every_state_in_ascending_id_order() {
    let mut f = Fixture::new();
    for (i, state) in WorkState::ALL.into_iter().enumerate() {
        f.item_in(&format!("work_{}", 5 - i), state);
    }
    let (first, more, next) = ids(
        &mut f,
        &ListRequest::parse(Some("2"), None, None, None).unwrap(),
    );
    assert_eq!(
        (first, more, next.clone()),
        (
            vec!["work_1".to_string(), "work_2".into()],
            true,
            Some("work_2".into())
        )
    );
    let (second, _, next) = ids(
        &mut f,
        &ListRequest::parse(Some("2"), next.as_deref(), None, None).unwrap(),
    );
    assert_eq!(second, ["work_3", "work_4"]);
    let (last, more, next_page) = ids(
        &mut f,
        &ListRequest::parse(Some("2"), next.as_deref(), None, None).unwrap(),
    );
    assert_eq!(
        (last, more, next_page),
        (vec!["work_5".to_string()], false, None)
    );
}

#[test]
fn before_id_lists_the_items_just_before_it_ascending() {
    let mut f = Fixture::new();
    for i in 1..=5 {
        f.create(&format!("work_{i}"));
    }
    let request = ListRequest {
        limit: 2,
        cursor: Cursor::Before("work_4".parse().unwrap()),
    };
    let (page, more, next) = ids(&mut f, &request);
    assert_eq!(
        (page, more, next),
        (vec!["work_2".to_string(), "work_3".into()], true, None)
    );
    let (page, more, _) = ids(
        &mut f,
        &ListRequest {
            limit: 5,
            cursor: Cursor::Before("work_2".parse().unwrap()),
        },
    );
    assert_eq!((page, more), (vec!["work_1".to_string()], false));
}

#[test]
fn list_default_limit_is_20() {
    let mut f = Fixture::new();
    for i in 10..40 {
        f.create(&format!("work_{i}"));
    }
    let (page, more, _) = ids(&mut f, &ListRequest::parse(None, None, None, None).unwrap());
    assert_eq!((page.len(), more), (20, true));
}

#[test]
fn metadata_patches_merge_and_never_change_state() {
    let mut f = Fixture::new();
    f.item_in("work_a", WorkState::Active);
    let set = MetadataPatch::from([
        ("step".to_string(), Some("build".to_string())),
        ("gone".to_string(), None),
    ]);
    let updated = f.table.update_metadata(ENV, "work_a", &set, f.now).unwrap();
    assert!(updated.changed);
    assert_eq!(
        (updated.item.metadata.get("step"), updated.item.state),
        (Some("build"), WorkState::Active)
    );
    let delete = MetadataPatch::from([("step".to_string(), None)]);
    assert!(f
        .table
        .update_metadata(ENV, "work_a", &delete, f.now)
        .unwrap()
        .item
        .metadata
        .is_empty());
    let too_big = MetadataPatch::from([("k".to_string(), Some("v".repeat(513)))]);
    let error = f
        .table
        .update_metadata(ENV, "work_a", &too_big, f.now)
        .unwrap_err();
    assert_eq!(error.param(), Some(worklease::Param::Metadata));
}

#[test]
fn stats_count_depth_pending_oldest_and_pollers() {
    let mut f = Fixture::new();
    let oldest = f.create("work_1").created_at;
    f.advance(SECOND);
    f.create("work_2");
    f.create("work_3");
    f.item_in("work_4", WorkState::Active);
    f.poll(Some("w1")); // work_1 delivered: pending
    let stats = f.table.stats(ENV, f.now).unwrap();
    assert_eq!(
        (
            stats.depth,
            stats.pending,
            stats.oldest_queued_at,
            stats.workers_polling
        ),
        (2, 1, Some(oldest), 1)
    );
    f.advance(5 * SECOND);
    f.poll(Some("w2")); // work_2 delivered; work_1 is reclaimable again
    let stats = f.table.stats(ENV, f.now).unwrap();
    assert_eq!(
        (stats.depth, stats.pending, stats.workers_polling),
        (2, 1, 2)
    );
    f.advance(25 * SECOND);
    assert_eq!(
        f.table.stats(ENV, f.now).unwrap().workers_polling,
        1,
        "w1 polled 30 s ago"
    );
    f.advance(5 * SECOND);
    assert_eq!(f.table.stats(ENV, f.now).unwrap().workers_polling, 0);
}
