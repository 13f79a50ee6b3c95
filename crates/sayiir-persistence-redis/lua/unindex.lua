-- Takes a workflow whose stored blob does not decode out of the scheduling indexes, so it
-- cannot crowd out the others; unless it was rewritten since it was read (that write has
-- indexed it again). ARGV: 1 now, 2 instance, 3 the revision read. Returns 'ok'.

if redis.call('HGET', K_SNAP, 'rev') == ARGV[3] then
  redis.call('ZREM', K_READY, INSTANCE)
  redis.call('ZREM', K_PARKED, INSTANCE)
end
return 'ok'
