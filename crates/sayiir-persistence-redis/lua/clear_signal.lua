-- Drops a pending request of one kind and puts the workflow back in the index it belongs to.
-- ARGV: 1 now, 2 instance, 3 kind. Returns 'ok'.

if redis.call('HDEL', K_SIG, ARGV[3]) == 1 then
  refresh()
end
return 'ok'
