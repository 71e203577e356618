-- The package inventory of a build's image (packages, OS, kernel), collected on the
-- builder before sealing; JSON of `inventory::Collected`. Release notes compare it with
-- the previous release's.
CREATE TABLE build_inventories (
    build_id   TEXT   PRIMARY KEY,
    collected  TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
