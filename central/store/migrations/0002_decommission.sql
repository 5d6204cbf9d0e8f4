-- When an admin confirmed a cluster's decommission
-- (POST /api/v1/clusters/{id}/decommission); NULL until then, and again
-- once lifecycle_status leaves decommission-requested for anything but
-- decommissioned. Like the other columns of clusters it is copied out of
-- the cluster's document (decommission_confirmed_at) on every write, in the
-- fixed-width UTC text form of every time the store keeps. Existing clusters
-- have no confirmation, so the column starts NULL for them. Valid in both
-- dialects as it is: no {{...}} placeholder needed.
ALTER TABLE clusters ADD COLUMN decommission_confirmed_at TEXT;
