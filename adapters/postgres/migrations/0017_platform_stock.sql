-- What each store's platform was last told of its stock: one row per sku and location
-- (the platform's own, '' where it keeps one count), so a restart pushes only changes.
CREATE TABLE platform_stock (
    platform       text NOT NULL,
    sku            text NOT NULL,
    location       text NOT NULL,
    pushed         integer,           -- the last figure set there; NULL: to be set
    platform_has   integer,           -- its figure as last known (checked before a set)
    retry_at       timestamptz,       -- not tried again before (unknown there, or stale)
    last_error     text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, sku, location)
);
