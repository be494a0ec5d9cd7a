-- Local demo data: two organizations, each with an admin and a viewer, and one user in both.
-- Users are created without passwords; `npm start` gives each a random one and prints it
-- (nothing guessable is committed). Demo users are marked with app_metadata.demo = true.

insert into auth.users (id, email, email_confirmed_at, raw_app_meta_data)
values
  ('a0000000-0000-4000-8000-000000000001', 'ada@acme.test',      now(), '{"provider":"email","providers":["email"],"demo":true}'),
  ('a0000000-0000-4000-8000-000000000002', 'victor@acme.test',   now(), '{"provider":"email","providers":["email"],"demo":true}'),
  ('b0000000-0000-4000-8000-000000000001', 'grace@globex.test',  now(), '{"provider":"email","providers":["email"],"demo":true}'),
  ('b0000000-0000-4000-8000-000000000002', 'mallory@globex.test', now(), '{"provider":"email","providers":["email"],"demo":true}'),
  ('c0000000-0000-4000-8000-000000000001', 'casey@both.test',    now(), '{"provider":"email","providers":["email"],"demo":true}');

insert into public.organizations (id, name, slug)
values
  ('0a000000-0000-4000-8000-00000000000a', 'Acme Robotics', 'acme'),
  ('0b000000-0000-4000-8000-00000000000b', 'Globex Support', 'globex');

insert into public.organization_members (org_id, user_id, role)
values
  ('0a000000-0000-4000-8000-00000000000a', 'a0000000-0000-4000-8000-000000000001', 'tenant_admin'),
  ('0a000000-0000-4000-8000-00000000000a', 'a0000000-0000-4000-8000-000000000002', 'project_viewer'),
  ('0b000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-000000000001', 'tenant_admin'),
  ('0b000000-0000-4000-8000-00000000000b', 'b0000000-0000-4000-8000-000000000002', 'project_viewer'),
  ('0a000000-0000-4000-8000-00000000000a', 'c0000000-0000-4000-8000-000000000001', 'project_contributor'),
  ('0b000000-0000-4000-8000-00000000000b', 'c0000000-0000-4000-8000-000000000001', 'project_contributor');
