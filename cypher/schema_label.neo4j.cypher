// key = graph + ':' + name is unique: several graphs live side by side.
CREATE CONSTRAINT label_key IF NOT EXISTS FOR (n:Label) REQUIRE n.key IS UNIQUE
