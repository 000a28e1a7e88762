-- The shop database of the campaign example: two campaigns, one launching on :today.
DROP TABLE IF EXISTS campaigns;
CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY,
    name        VARCHAR(100) NOT NULL,
    launch_date DATE NOT NULL,
    published   INTEGER NOT NULL DEFAULT 0,
    status      VARCHAR(20) NOT NULL DEFAULT 'planned'
);
INSERT INTO campaigns (id, name, launch_date) VALUES (1, 'Winter sale', :today);
INSERT INTO campaigns (id, name, launch_date) VALUES (2, 'Spring preview', :later);
