-- Bulk load of :n generated users into the `users` table of a database
-- migrated by meetinity-auth-server (see run.sh). Secondary indexes are
-- dropped first and recreated from their own definitions (pg_indexes), so the
-- schema after the load is exactly the migrated one.
\set ON_ERROR_STOP on
SET maintenance_work_mem = '256MB';
SET synchronous_commit = off;

CREATE TEMP TABLE saved_indexes AS
    SELECT indexname, indexdef FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename = 'users'
      AND indexname NOT IN (SELECT conname FROM pg_constraint
                            WHERE conrelid = 'users'::regclass);
SELECT format('DROP INDEX %I', indexname) FROM saved_indexes \gexec

INSERT INTO users (id, email, email_verified, name, photo_url, title, company,
    location, industry, linkedin_url, experience_years, provider, bio, timezone,
    skills, interests, is_active, privacy_settings, preferences, roles,
    last_login, last_active_at, login_count, created_at, updated_at)
SELECT
    md5('bench-user-' || g)::uuid::text,
    'user' || g || '@bench.example',
    g % 5 <> 0,
    fn || ' ' || ln,
    CASE WHEN g % 3 = 0 THEN 'https://cdn.example.com/p/' || g || '.jpg' END,
    (ARRAY['Software Engineer','Senior Software Engineer','Staff Engineer',
           'Engineering Manager','Product Manager','Product Designer',
           'Data Scientist','Data Engineer','DevOps Engineer','Site Reliability Engineer',
           'Sales Director','Account Executive','Marketing Manager','Growth Lead',
           'Chief Technology Officer','Chief Executive Officer','Founder',
           'Consultant','Business Analyst','Recruiter','HR Business Partner',
           'Financial Analyst','Research Scientist','UX Researcher','Solutions Architect',
           'Security Engineer','Mobile Developer','Frontend Developer','Backend Developer',
           'Operations Manager'])[1 + h1 % 30],
    (ARRAY['Acme','Globex','Initech','Umbrella','Hooli','Stark Industries',
           'Wayne Enterprises','Wonka','Tyrell','Cyberdyne','Soylent','Aperture',
           'Black Mesa','Vandelay','Pied Piper','Massive Dynamic','Oscorp','Gringotts',
           'Monarch','Dunder Mifflin','Prestige Worldwide','Nakatomi','Virtucon',
           'Weyland','Bluth','Sterling Cooper','Los Pollos','Krusty Krab','Planet Express',
           'Zorg','Duff','Spacely','Cogswell','Gekko','Rekall','Ollivanders',
           'Octan','Genco','Ajax','Yoyodyne'])[1 + h2 % 40],
    (ARRAY['Paris','Lyon','Marseille','Toulouse','Nantes','Bordeaux','Lille','Nice',
           'London','Berlin','Madrid','Barcelona','Amsterdam','Brussels','Geneva',
           'Montreal','New York','San Francisco','Singapore','Remote'])[1 + h3 % 20],
    (ARRAY['Technology','Finance','Healthcare','Education','Retail','Manufacturing',
           'Media','Energy','Consulting','Real Estate','Transportation','Hospitality'])
        [1 + h4 % 12],
    CASE WHEN g % 2 = 0 THEN 'https://www.linkedin.com/in/bench-' || g END,
    CASE WHEN h9 % 17 = 0 THEN NULL ELSE h9 % 41 END,
    'password',
    'I am a ' || lower(sk1) || ' person working on ' ||
        (ARRAY['payments','search','mobile apps','cloud platforms','marketplaces',
               'analytics','events','community building','hiring','logistics',
               'climate tech','developer tools','security','education products'])
            [1 + h5 % 14]
        || ' in ' || fn || '''s team; I enjoy '
        || (ARRAY['hiking','chess','cycling','photography','cooking','jazz','running',
                  'sailing','reading','climbing'])[1 + h6 % 10] || '.',
    (ARRAY['Europe/Paris','Europe/London','Europe/Berlin','America/New_York',
           'America/Los_Angeles','Asia/Singapore','America/Montreal'])[1 + h7 % 7],
    jsonb_build_array(sk1, sk2, sk3) ||
        CASE WHEN g % 2 = 0 THEN jsonb_build_array(sk4) ELSE '[]'::jsonb END,
    jsonb_build_array(
        (ARRAY['AI','Startups','Networking','Open Source','Design','Leadership',
               'Fintech','Sustainability','Mentoring','Public Speaking'])[1 + h8 % 10]),
    g % 50 <> 0,
    CASE WHEN g % 20 = 0 THEN '{"location":"private"}'::jsonb
         WHEN g % 33 = 0 THEN '{"bio":"connections"}'::jsonb
         ELSE '{}'::jsonb END,
    '{}'::jsonb,
    '[]'::jsonb,
    ts + interval '3 days',
    ts + interval '4 days',
    g % 40,
    ts,
    ts + interval '1 day'
FROM (
    SELECT g,
        hashint4(g * 16 + 1) & 2147483647 AS h1,
        hashint4(g * 16 + 2) & 2147483647 AS h2,
        hashint4(g * 16 + 3) & 2147483647 AS h3,
        hashint4(g * 16 + 4) & 2147483647 AS h4,
        hashint4(g * 16 + 5) & 2147483647 AS h5,
        hashint4(g * 16 + 6) & 2147483647 AS h6,
        hashint4(g * 16 + 7) & 2147483647 AS h7,
        hashint4(g * 16 + 8) & 2147483647 AS h8,
        hashint4(g * 16 + 9) & 2147483647 AS h9,
        (ARRAY['Alice','Bruno','Camille','David','Emma','Farid','Gabriel','Hugo','Ines',
               'Jules','Karim','Lea','Manon','Nathan','Oceane','Paul','Quentin','Rose',
               'Sofia','Thomas','Ugo','Victor','Wendy','Xavier','Yasmine','Zoe','Amir',
               'Beatrice','Chloe','Dimitri','Elena','Fatou','Giulia','Hana','Ivan',
               'Julia','Kenji','Laura','Mehdi','Nina','Olga','Pierre','Rania','Samuel',
               'Tariq','Ulla','Vera','William','Yuki','Zeynep'])[1 + (hashint4(g * 16 + 13) & 2147483647) % 50] AS fn,
        (ARRAY['Martin','Bernard','Dubois','Thomas','Robert','Richard','Petit','Durand',
               'Leroy','Moreau','Simon','Laurent','Lefebvre','Michel','Garcia','David',
               'Bertrand','Roux','Vincent','Fournier','Morel','Girard','Andre','Mercier',
               'Dupont','Lambert','Bonnet','Francois','Martinez','Legrand','Garnier',
               'Faure','Rousseau','Blanc','Guerin','Muller','Henry','Roussel','Nicolas',
               'Perrin','Morin','Mathieu','Clement','Gauthier','Dumont','Lopez','Fontaine',
               'Chevalier','Robin','Masson','Smith','Jones','Brown','Nguyen','Kim','Chen',
               'Schmidt','Rossi','Silva','Novak'])[1 + (hashint4(g * 16 + 10) & 2147483647) % 60] AS ln,
        s[1 + (hashint4(g * 16 + 11) & 2147483647) % 40] AS sk1,
        s[1 + ((hashint4(g * 16 + 11) & 2147483647) % 40 + 1 + (hashint4(g * 16 + 12) & 2147483647) % 13) % 40] AS sk2,
        s[1 + ((hashint4(g * 16 + 11) & 2147483647) % 40 + 14 + (hashint4(g * 16 + 12) & 2147483647) % 13) % 40] AS sk3,
        s[1 + ((hashint4(g * 16 + 11) & 2147483647) % 40 + 27 + (hashint4(g * 16 + 12) & 2147483647) % 13) % 40] AS sk4,
        timestamptz '2026-12-01 00:00:00+00' - (g * interval '90 seconds') AS ts
    FROM generate_series(1, :n) AS g,
    LATERAL (SELECT ARRAY['Rust','Python','Go','Java','Kotlin','Swift','TypeScript',
        'JavaScript','React','Vue','Angular','Node.js','PostgreSQL','Redis','Kafka',
        'Kubernetes','Docker','Terraform','AWS','GCP','Azure','Machine Learning',
        'Data Analysis','SQL','Product Management','UX Design','Figma','Sales',
        'Marketing','SEO','Leadership','Public Speaking','Negotiation','Finance',
        'Accounting','Recruiting','Scrum','Agile','Security','Elixir'] AS s) AS sk
) AS gen;

SELECT indexdef FROM saved_indexes \gexec
ANALYZE users;
