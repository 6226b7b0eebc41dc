drop schema pgb cascade;
