"""What the Redis-protocol commands are: the metadata COMMAND INFO/DOCS/COUNT report.

One line per command (and per subcommand of the container commands the server answers):
``name | arity | flags | first key | last key | key step | ACL categories | group | since |
complexity | summary``, with Redis's conventions (arity < 0: at least that many arguments,
the name included; key positions count the name as 0). The values are redis-server 7.0's for
the same commands, which tests/kv/test_kv_catalog.py checks against a running server.
``REDIS_ONLY`` names the redis-server 7.0 commands litecluster does not implement: they get a
"not supported" error instead of Redis's "unknown command".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class CommandInfo:
    name: str
    """Lower case; subcommands as ``container|sub``."""
    arity: int
    flags: tuple[str, ...]
    first_key: int
    last_key: int
    key_step: int
    acl_categories: tuple[str, ...]
    group: str
    since: str
    complexity: str
    summary: str

    @property
    def readonly(self) -> bool:
        return "readonly" in self.flags

    @property
    def write(self) -> bool:
        return "write" in self.flags

    def key_positions(self, argc: int) -> range:
        """Indexes of the keys in a command of ``argc`` arguments (name included)."""
        if self.first_key <= 0:
            return range(0)
        last = self.last_key if self.last_key >= 0 else argc + self.last_key
        return range(self.first_key, min(last, argc - 1) + 1, self.key_step)


_TABLE: Final = """
get | 2 | readonly fast | 1 | 1 | 1 | @read @string @fast | string | 1.0.0 | O(1) | Get the value of a key
set | -3 | write denyoom | 1 | 1 | 1 | @write @string @slow | string | 1.0.0 | O(1) | Set the string value of a key
setnx | 3 | write denyoom fast | 1 | 1 | 1 | @write @string @fast | string | 1.0.0 | O(1) | Set the value of a key, only if the key does not exist
setex | 4 | write denyoom | 1 | 1 | 1 | @write @string @slow | string | 2.0.0 | O(1) | Set the value and expiration of a key
psetex | 4 | write denyoom | 1 | 1 | 1 | @write @string @slow | string | 2.6.0 | O(1) | Set the value and expiration in milliseconds of a key
mget | -2 | readonly fast | 1 | -1 | 1 | @read @string @fast | string | 1.0.0 | O(N) where N is the number of keys to retrieve. | Get the values of all the given keys
mset | -3 | write denyoom | 1 | -1 | 2 | @write @string @slow | string | 1.0.1 | O(N) where N is the number of keys to set. | Set multiple keys to multiple values
msetnx | -3 | write denyoom | 1 | -1 | 2 | @write @string @slow | string | 1.0.1 | O(N) where N is the number of keys to set. | Set multiple keys to multiple values, only if none of the keys exist
incr | 2 | write denyoom fast | 1 | 1 | 1 | @write @string @fast | string | 1.0.0 | O(1) | Increment the integer value of a key by one
incrby | 3 | write denyoom fast | 1 | 1 | 1 | @write @string @fast | string | 1.0.0 | O(1) | Increment the integer value of a key by the given amount
incrbyfloat | 3 | write denyoom fast | 1 | 1 | 1 | @write @string @fast | string | 2.6.0 | O(1) | Increment the float value of a key by the given amount
decr | 2 | write denyoom fast | 1 | 1 | 1 | @write @string @fast | string | 1.0.0 | O(1) | Decrement the integer value of a key by one
decrby | 3 | write denyoom fast | 1 | 1 | 1 | @write @string @fast | string | 1.0.0 | O(1) | Decrement the integer value of a key by the given number
append | 3 | write denyoom fast | 1 | 1 | 1 | @write @string @fast | string | 2.0.0 | O(1). The amortized time complexity is O(1) assuming the appended value is small and the already present value is of any size, since the dynamic string library used by Redis will double the free space available on every reallocation. | Append a value to a key
strlen | 2 | readonly fast | 1 | 1 | 1 | @read @string @fast | string | 2.2.0 | O(1) | Get the length of the value stored in a key
getdel | 2 | write fast | 1 | 1 | 1 | @write @string @fast | string | 6.2.0 | O(1) | Get the value of a key and delete the key
getex | -2 | write fast | 1 | 1 | 1 | @write @string @fast | string | 6.2.0 | O(1) | Get the value of a key and optionally set its expiration
getrange | 4 | readonly | 1 | 1 | 1 | @read @string @slow | string | 2.4.0 | O(N) where N is the length of the returned string. The complexity is ultimately determined by the returned length, but because creating a substring from an existing string is very cheap, it can be considered O(1) for small strings. | Get a substring of the string stored at a key
setrange | 4 | write denyoom | 1 | 1 | 1 | @write @string @slow | string | 2.2.0 | O(1), not counting the time taken to copy the new string in place. Usually, this string is very small so the amortized complexity is O(1). Otherwise, complexity is O(M) with M being the length of the value argument. | Overwrite part of a string at key starting at the specified offset
getset | 3 | write denyoom fast | 1 | 1 | 1 | @write @string @fast | string | 1.0.0 | O(1) | Set the string value of a key and return its old value
del | -2 | write | 1 | -1 | 1 | @keyspace @write @slow | generic | 1.0.0 | O(N) where N is the number of keys that will be removed. When a key to remove holds a value other than a string, the individual complexity for this key is O(M) where M is the number of elements in the list, set, sorted set or hash. Removing a single key that holds a string value is O(1). | Delete a key
unlink | -2 | write fast | 1 | -1 | 1 | @keyspace @write @fast | generic | 4.0.0 | O(1) for each key removed regardless of its size. Then the command does O(N) work in a different thread in order to reclaim memory, where N is the number of allocations the deleted objects where composed of. | Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking.
exists | -2 | readonly fast | 1 | -1 | 1 | @keyspace @read @fast | generic | 1.0.0 | O(N) where N is the number of keys to check. | Determine if a key exists
expire | -3 | write fast | 1 | 1 | 1 | @keyspace @write @fast | generic | 1.0.0 | O(1) | Set a key's time to live in seconds
pexpire | -3 | write fast | 1 | 1 | 1 | @keyspace @write @fast | generic | 2.6.0 | O(1) | Set a key's time to live in milliseconds
expireat | -3 | write fast | 1 | 1 | 1 | @keyspace @write @fast | generic | 1.2.0 | O(1) | Set the expiration for a key as a UNIX timestamp
pexpireat | -3 | write fast | 1 | 1 | 1 | @keyspace @write @fast | generic | 2.6.0 | O(1) | Set the expiration for a key as a UNIX timestamp specified in milliseconds
expiretime | 2 | readonly fast | 1 | 1 | 1 | @keyspace @read @fast | generic | 7.0.0 | O(1) | Get the expiration Unix timestamp for a key
pexpiretime | 2 | readonly fast | 1 | 1 | 1 | @keyspace @read @fast | generic | 7.0.0 | O(1) | Get the expiration Unix timestamp for a key in milliseconds
ttl | 2 | readonly fast | 1 | 1 | 1 | @keyspace @read @fast | generic | 1.0.0 | O(1) | Get the time to live for a key in seconds
pttl | 2 | readonly fast | 1 | 1 | 1 | @keyspace @read @fast | generic | 2.6.0 | O(1) | Get the time to live for a key in milliseconds
persist | 2 | write fast | 1 | 1 | 1 | @keyspace @write @fast | generic | 2.2.0 | O(1) | Remove the expiration from a key
type | 2 | readonly fast | 1 | 1 | 1 | @keyspace @read @fast | generic | 1.0.0 | O(1) | Determine the type stored at key
keys | 2 | readonly | 0 | 0 | 0 | @keyspace @read @slow @dangerous | generic | 1.0.0 | O(N) with N being the number of keys in the database, under the assumption that the key names in the database and the given pattern have limited length. | Find all keys matching the given pattern
scan | -2 | readonly | 0 | 0 | 0 | @keyspace @read @slow | generic | 2.8.0 | O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection. | Incrementally iterate the keys space
rename | 3 | write | 1 | 2 | 1 | @keyspace @write @slow | generic | 1.0.0 | O(1) | Rename a key
renamenx | 3 | write fast | 1 | 2 | 1 | @keyspace @write @fast | generic | 1.0.0 | O(1) | Rename a key, only if the new key does not exist
randomkey | 1 | readonly | 0 | 0 | 0 | @keyspace @read @slow | generic | 1.0.0 | O(1) | Return a random key from the keyspace
copy | -3 | write denyoom | 1 | 2 | 1 | @keyspace @write @slow | generic | 6.2.0 | O(N) worst case for collections, where N is the number of nested items. O(1) for string values. | Copy a key
touch | -2 | readonly fast | 1 | -1 | 1 | @keyspace @read @fast | generic | 3.2.1 | O(N) where N is the number of keys that will be touched. | Alters the last access time of a key(s). Returns the number of existing keys specified.
dbsize | 1 | readonly fast | 0 | 0 | 0 | @keyspace @read @fast | server | 1.0.0 | O(1) | Return the number of keys in the selected database
flushdb | -1 | write | 0 | 0 | 0 | @keyspace @write @slow @dangerous | server | 1.0.0 | O(N) where N is the number of keys in the selected database | Remove all keys from the current database
flushall | -1 | write | 0 | 0 | 0 | @keyspace @write @slow @dangerous | server | 1.0.0 | O(N) where N is the total number of keys in all databases | Remove all keys from all databases
ping | -1 | fast | 0 | 0 | 0 | @fast @connection | connection | 1.0.0 | O(1) | Ping the server
echo | 2 | loading stale fast | 0 | 0 | 0 | @fast @connection | connection | 1.0.0 | O(1) | Echo the given string
hset | -4 | write denyoom fast | 1 | 1 | 1 | @write @hash @fast | hash | 2.0.0 | O(1) for each field/value pair added, so O(N) to add N field/value pairs when the command is called with multiple field/value pairs. | Set the string value of a hash field
hsetnx | 4 | write denyoom fast | 1 | 1 | 1 | @write @hash @fast | hash | 2.0.0 | O(1) | Set the value of a hash field, only if the field does not exist
hget | 3 | readonly fast | 1 | 1 | 1 | @read @hash @fast | hash | 2.0.0 | O(1) | Get the value of a hash field
hmget | -3 | readonly fast | 1 | 1 | 1 | @read @hash @fast | hash | 2.0.0 | O(N) where N is the number of fields being requested. | Get the values of all the given hash fields
hmset | -4 | write denyoom fast | 1 | 1 | 1 | @write @hash @fast | hash | 2.0.0 | O(N) where N is the number of fields being set. | Set multiple hash fields to multiple values
hgetall | 2 | readonly | 1 | 1 | 1 | @read @hash @slow | hash | 2.0.0 | O(N) where N is the size of the hash. | Get all the fields and values in a hash
hdel | -3 | write fast | 1 | 1 | 1 | @write @hash @fast | hash | 2.0.0 | O(N) where N is the number of fields to be removed. | Delete one or more hash fields
hexists | 3 | readonly fast | 1 | 1 | 1 | @read @hash @fast | hash | 2.0.0 | O(1) | Determine if a hash field exists
hlen | 2 | readonly fast | 1 | 1 | 1 | @read @hash @fast | hash | 2.0.0 | O(1) | Get the number of fields in a hash
hkeys | 2 | readonly | 1 | 1 | 1 | @read @hash @slow | hash | 2.0.0 | O(N) where N is the size of the hash. | Get all the fields in a hash
hvals | 2 | readonly | 1 | 1 | 1 | @read @hash @slow | hash | 2.0.0 | O(N) where N is the size of the hash. | Get all the values in a hash
hincrby | 4 | write denyoom fast | 1 | 1 | 1 | @write @hash @fast | hash | 2.0.0 | O(1) | Increment the integer value of a hash field by the given number
hincrbyfloat | 4 | write denyoom fast | 1 | 1 | 1 | @write @hash @fast | hash | 2.6.0 | O(1) | Increment the float value of a hash field by the given amount
hstrlen | 3 | readonly fast | 1 | 1 | 1 | @read @hash @fast | hash | 3.2.0 | O(1) | Get the length of the value of a hash field
hscan | -3 | readonly | 1 | 1 | 1 | @read @hash @slow | hash | 2.8.0 | O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.. | Incrementally iterate hash fields and associated values
hrandfield | -2 | readonly | 1 | 1 | 1 | @read @hash @slow | hash | 6.2.0 | O(N) where N is the number of fields returned | Get one or multiple random fields from a hash
sadd | -3 | write denyoom fast | 1 | 1 | 1 | @write @set @fast | set | 1.0.0 | O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments. | Add one or more members to a set
srem | -3 | write fast | 1 | 1 | 1 | @write @set @fast | set | 1.0.0 | O(N) where N is the number of members to be removed. | Remove one or more members from a set
smembers | 2 | readonly | 1 | 1 | 1 | @read @set @slow | set | 1.0.0 | O(N) where N is the set cardinality. | Get all the members in a set
sismember | 3 | readonly fast | 1 | 1 | 1 | @read @set @fast | set | 1.0.0 | O(1) | Determine if a given value is a member of a set
smismember | -3 | readonly fast | 1 | 1 | 1 | @read @set @fast | set | 6.2.0 | O(N) where N is the number of elements being checked for membership | Returns the membership associated with the given elements for a set
scard | 2 | readonly fast | 1 | 1 | 1 | @read @set @fast | set | 1.0.0 | O(1) | Get the number of members in a set
spop | -2 | write fast | 1 | 1 | 1 | @write @set @fast | set | 1.0.0 | Without the count argument O(1), otherwise O(N) where N is the value of the passed count. | Remove and return one or multiple random members from a set
srandmember | -2 | readonly | 1 | 1 | 1 | @read @set @slow | set | 1.0.0 | Without the count argument O(1), otherwise O(N) where N is the absolute value of the passed count. | Get one or multiple random members from a set
sinter | -2 | readonly | 1 | -1 | 1 | @read @set @slow | set | 1.0.0 | O(N*M) worst case where N is the cardinality of the smallest set and M is the number of sets. | Intersect multiple sets
sunion | -2 | readonly | 1 | -1 | 1 | @read @set @slow | set | 1.0.0 | O(N) where N is the total number of elements in all given sets. | Add multiple sets
sdiff | -2 | readonly | 1 | -1 | 1 | @read @set @slow | set | 1.0.0 | O(N) where N is the total number of elements in all given sets. | Subtract multiple sets
sinterstore | -3 | write denyoom | 1 | -1 | 1 | @write @set @slow | set | 1.0.0 | O(N*M) worst case where N is the cardinality of the smallest set and M is the number of sets. | Intersect multiple sets and store the resulting set in a key
sunionstore | -3 | write denyoom | 1 | -1 | 1 | @write @set @slow | set | 1.0.0 | O(N) where N is the total number of elements in all given sets. | Add multiple sets and store the resulting set in a key
sdiffstore | -3 | write denyoom | 1 | -1 | 1 | @write @set @slow | set | 1.0.0 | O(N) where N is the total number of elements in all given sets. | Subtract multiple sets and store the resulting set in a key
sscan | -3 | readonly | 1 | 1 | 1 | @read @set @slow | set | 2.8.0 | O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.. | Incrementally iterate Set elements
smove | 4 | write fast | 1 | 2 | 1 | @write @set @fast | set | 1.0.0 | O(1) | Move a member from one set to another
sintercard | -3 | readonly movablekeys | 0 | 0 | 0 | @read @set @slow | set | 7.0.0 | O(N*M) worst case where N is the cardinality of the smallest set and M is the number of sets. | Intersect multiple sets and return the cardinality of the result
lpush | -3 | write denyoom fast | 1 | 1 | 1 | @write @list @fast | list | 1.0.0 | O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments. | Prepend one or multiple elements to a list
rpush | -3 | write denyoom fast | 1 | 1 | 1 | @write @list @fast | list | 1.0.0 | O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments. | Append one or multiple elements to a list
lpushx | -3 | write denyoom fast | 1 | 1 | 1 | @write @list @fast | list | 2.2.0 | O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments. | Prepend an element to a list, only if the list exists
rpushx | -3 | write denyoom fast | 1 | 1 | 1 | @write @list @fast | list | 2.2.0 | O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments. | Append an element to a list, only if the list exists
lpop | -2 | write fast | 1 | 1 | 1 | @write @list @fast | list | 1.0.0 | O(N) where N is the number of elements returned | Remove and get the first elements in a list
rpop | -2 | write fast | 1 | 1 | 1 | @write @list @fast | list | 1.0.0 | O(N) where N is the number of elements returned | Remove and get the last elements in a list
llen | 2 | readonly fast | 1 | 1 | 1 | @read @list @fast | list | 1.0.0 | O(1) | Get the length of a list
lrange | 4 | readonly | 1 | 1 | 1 | @read @list @slow | list | 1.0.0 | O(S+N) where S is the distance of start offset from HEAD for small lists, from nearest end (HEAD or TAIL) for large lists; and N is the number of elements in the specified range. | Get a range of elements from a list
lindex | 3 | readonly | 1 | 1 | 1 | @read @list @slow | list | 1.0.0 | O(N) where N is the number of elements to traverse to get to the element at index. This makes asking for the first or the last element of the list O(1). | Get an element from a list by its index
lset | 4 | write denyoom | 1 | 1 | 1 | @write @list @slow | list | 1.0.0 | O(N) where N is the length of the list. Setting either the first or the last element of the list is O(1). | Set the value of an element in a list by its index
lrem | 4 | write | 1 | 1 | 1 | @write @list @slow | list | 1.0.0 | O(N+M) where N is the length of the list and M is the number of elements removed. | Remove elements from a list
ltrim | 4 | write | 1 | 1 | 1 | @write @list @slow | list | 1.0.0 | O(N) where N is the number of elements to be removed by the operation. | Trim a list to the specified range
linsert | 5 | write denyoom | 1 | 1 | 1 | @write @list @slow | list | 2.2.0 | O(N) where N is the number of elements to traverse before seeing the value pivot. This means that inserting somewhere on the left end on the list (head) can be considered O(1) and inserting somewhere on the right end (tail) is O(N). | Insert an element before or after another element in a list
lpos | -3 | readonly | 1 | 1 | 1 | @read @list @slow | list | 6.0.6 | O(N) where N is the number of elements in the list, for the average case. When searching for elements near the head or the tail of the list, or when the MAXLEN option is provided, the command may run in constant time. | Return the index of matching elements on a list
lmove | 5 | write denyoom | 1 | 2 | 1 | @write @list @slow | list | 6.2.0 | O(1) | Pop an element from a list, push it to another list and return it
rpoplpush | 3 | write denyoom | 1 | 2 | 1 | @write @list @slow | list | 1.2.0 | O(1) | Remove the last element in a list, prepend it to another list and return it
zadd | -4 | write denyoom fast | 1 | 1 | 1 | @write @sortedset @fast | sorted-set | 1.2.0 | O(log(N)) for each item added, where N is the number of elements in the sorted set. | Add one or more members to a sorted set, or update its score if it already exists
zrem | -3 | write fast | 1 | 1 | 1 | @write @sortedset @fast | sorted-set | 1.2.0 | O(M*log(N)) with N being the number of elements in the sorted set and M the number of elements to be removed. | Remove one or more members from a sorted set
zscore | 3 | readonly fast | 1 | 1 | 1 | @read @sortedset @fast | sorted-set | 1.2.0 | O(1) | Get the score associated with the given member in a sorted set
zmscore | -3 | readonly fast | 1 | 1 | 1 | @read @sortedset @fast | sorted-set | 6.2.0 | O(N) where N is the number of members being requested. | Get the score associated with the given members in a sorted set
zincrby | 4 | write denyoom fast | 1 | 1 | 1 | @write @sortedset @fast | sorted-set | 1.2.0 | O(log(N)) where N is the number of elements in the sorted set. | Increment the score of a member in a sorted set
zcard | 2 | readonly fast | 1 | 1 | 1 | @read @sortedset @fast | sorted-set | 1.2.0 | O(1) | Get the number of members in a sorted set
zcount | 4 | readonly fast | 1 | 1 | 1 | @read @sortedset @fast | sorted-set | 2.0.0 | O(log(N)) with N being the number of elements in the sorted set. | Count the members in a sorted set with scores within the given values
zrange | -4 | readonly | 1 | 1 | 1 | @read @sortedset @slow | sorted-set | 1.2.0 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements returned. | Return a range of members in a sorted set
zrank | 3 | readonly fast | 1 | 1 | 1 | @read @sortedset @fast | sorted-set | 2.0.0 | O(log(N)) | Determine the index of a member in a sorted set
zrevrank | 3 | readonly fast | 1 | 1 | 1 | @read @sortedset @fast | sorted-set | 2.0.0 | O(log(N)) | Determine the index of a member in a sorted set, with scores ordered from high to low
zpopmin | -2 | write fast | 1 | 1 | 1 | @write @sortedset @fast | sorted-set | 5.0.0 | O(log(N)*M) with N being the number of elements in the sorted set, and M being the number of elements popped. | Remove and return members with the lowest scores in a sorted set
zpopmax | -2 | write fast | 1 | 1 | 1 | @write @sortedset @fast | sorted-set | 5.0.0 | O(log(N)*M) with N being the number of elements in the sorted set, and M being the number of elements popped. | Remove and return members with the highest scores in a sorted set
zrangebyscore | -4 | readonly | 1 | 1 | 1 | @read @sortedset @slow | sorted-set | 1.0.5 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements being returned. If M is constant (e.g. always asking for the first 10 elements with LIMIT), you can consider it O(log(N)). | Return a range of members in a sorted set, by score
zrevrangebyscore | -4 | readonly | 1 | 1 | 1 | @read @sortedset @slow | sorted-set | 2.2.0 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements being returned. If M is constant (e.g. always asking for the first 10 elements with LIMIT), you can consider it O(log(N)). | Return a range of members in a sorted set, by score, with scores ordered from high to low
zremrangebyscore | 4 | write | 1 | 1 | 1 | @write @sortedset @slow | sorted-set | 1.2.0 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements removed by the operation. | Remove all members in a sorted set within the given scores
zscan | -3 | readonly | 1 | 1 | 1 | @read @sortedset @slow | sorted-set | 2.8.0 | O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.. | Incrementally iterate sorted sets elements and associated scores
zrevrange | -4 | readonly | 1 | 1 | 1 | @read @sortedset @slow | sorted-set | 1.2.0 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements returned. | Return a range of members in a sorted set, by index, with scores ordered from high to low
zrangebylex | -4 | readonly | 1 | 1 | 1 | @read @sortedset @slow | sorted-set | 2.8.9 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements being returned. If M is constant (e.g. always asking for the first 10 elements with LIMIT), you can consider it O(log(N)). | Return a range of members in a sorted set, by lexicographical range
zrevrangebylex | -4 | readonly | 1 | 1 | 1 | @read @sortedset @slow | sorted-set | 2.8.9 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements being returned. If M is constant (e.g. always asking for the first 10 elements with LIMIT), you can consider it O(log(N)). | Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings.
zlexcount | 4 | readonly fast | 1 | 1 | 1 | @read @sortedset @fast | sorted-set | 2.8.9 | O(log(N)) with N being the number of elements in the sorted set. | Count the number of members in a sorted set between a given lexicographical range
zremrangebyrank | 4 | write | 1 | 1 | 1 | @write @sortedset @slow | sorted-set | 2.0.0 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements removed by the operation. | Remove all members in a sorted set within the given indexes
zremrangebylex | 4 | write | 1 | 1 | 1 | @write @sortedset @slow | sorted-set | 2.8.9 | O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements removed by the operation. | Remove all members in a sorted set between the given lexicographical range
auth | -2 | noscript loading stale fast no_auth allow_busy | 0 | 0 | 0 | @fast @connection | connection | 1.0.0 | O(N) where N is the number of passwords defined for the user | Authenticate to the server
select | 2 | loading stale fast | 0 | 0 | 0 | @fast @connection | connection | 1.0.0 | O(1) | Change the selected database for the current connection
quit | -1 | noscript loading stale fast no_auth allow_busy | 0 | 0 | 0 | @fast @connection | connection | 1.0.0 | O(1) | Close the connection
client | -2 |  | 0 | 0 | 0 | @slow | connection | 2.4.0 | Depends on subcommand. | A container for client connection commands
client|setname | 3 | noscript loading stale | 0 | 0 | 0 | @slow @connection | connection | 2.6.9 | O(1) | Set the current connection name
client|getname | 2 | noscript loading stale | 0 | 0 | 0 | @slow @connection | connection | 2.6.9 | O(1) | Get the current connection name
client|id | 2 | noscript loading stale | 0 | 0 | 0 | @slow @connection | connection | 5.0.0 | O(1) | Returns the client ID for the current connection
info | -1 | loading stale | 0 | 0 | 0 | @slow @dangerous | server | 1.0.0 | O(1) | Get information and statistics about the server
command | -1 | loading stale | 0 | 0 | 0 | @slow @connection | server | 2.8.13 | O(N) where N is the total number of Redis commands | Get array of Redis command details
command|count | 2 | loading stale | 0 | 0 | 0 | @slow @connection | server | 2.8.13 | O(1) | Get total number of Redis commands
command|info | -2 | loading stale | 0 | 0 | 0 | @slow @connection | server | 2.8.13 | O(N) where N is the number of commands to look up | Get array of specific Redis command details, or all when no argument is given.
command|docs | -2 | loading stale | 0 | 0 | 0 | @slow @connection | server | 7.0.0 | O(N) where N is the number of commands to look up | Get array of specific Redis command documentation
command|list | -2 | loading stale | 0 | 0 | 0 | @slow @connection | server | 7.0.0 | O(N) where N is the total number of Redis commands | Get an array of Redis command names
hello | -1 | noscript loading stale fast no_auth allow_busy | 0 | 0 | 0 | @fast @connection | connection | 6.0.0 | O(1) | Handshake with Redis
multi | 1 | noscript loading stale fast allow_busy | 0 | 0 | 0 | @fast @transaction | transactions | 1.2.0 | O(1) | Mark the start of a transaction block
exec | 1 | noscript loading stale skip_slowlog | 0 | 0 | 0 | @slow @transaction | transactions | 1.2.0 | Depends on commands in the transaction | Execute all commands issued after MULTI
discard | 1 | noscript loading stale fast allow_busy | 0 | 0 | 0 | @fast @transaction | transactions | 2.0.0 | O(N), when N is the number of queued commands | Discard all commands issued after MULTI
watch | -2 | noscript loading stale fast allow_busy | 1 | -1 | 1 | @fast @transaction | transactions | 2.2.0 | O(1) for every key. | Watch the given keys to determine execution of the MULTI/EXEC block
unwatch | 1 | noscript loading stale fast allow_busy | 0 | 0 | 0 | @fast @transaction | transactions | 2.2.0 | O(1) | Forget about all watched keys
publish | 3 | pubsub loading stale fast | 0 | 0 | 0 | @pubsub @fast | pubsub | 2.0.0 | O(N+M) where N is the number of clients subscribed to the receiving channel and M is the total number of subscribed patterns (by any client). | Post a message to a channel
subscribe | -2 | pubsub noscript loading stale | 0 | 0 | 0 | @pubsub @slow | pubsub | 2.0.0 | O(N) where N is the number of channels to subscribe to. | Listen for messages published to the given channels
unsubscribe | -1 | pubsub noscript loading stale | 0 | 0 | 0 | @pubsub @slow | pubsub | 2.0.0 | O(N) where N is the number of clients already subscribed to a channel. | Stop listening for messages posted to the given channels
psubscribe | -2 | pubsub noscript loading stale | 0 | 0 | 0 | @pubsub @slow | pubsub | 2.0.0 | O(N) where N is the number of patterns the client is already subscribed to. | Listen for messages published to channels matching the given patterns
punsubscribe | -1 | pubsub noscript loading stale | 0 | 0 | 0 | @pubsub @slow | pubsub | 2.0.0 | O(N+M) where N is the number of patterns the client is already subscribed and M is the number of total patterns subscribed in the system (by any client). | Stop listening for messages posted to channels matching the given patterns
pubsub | -2 |  | 0 | 0 | 0 | @slow | pubsub | 2.8.0 | Depends on subcommand. | A container for Pub/Sub commands
pubsub|channels | -2 | pubsub loading stale | 0 | 0 | 0 | @pubsub @slow | pubsub | 2.8.0 | O(N) where N is the number of active channels, and assuming constant time pattern matching (relatively short channels and patterns) | List active channels
pubsub|numsub | -2 | pubsub loading stale | 0 | 0 | 0 | @pubsub @slow | pubsub | 2.8.0 | O(N) for the NUMSUB subcommand, where N is the number of requested channels | Get the count of subscribers for channels
pubsub|numpat | 2 | pubsub loading stale | 0 | 0 | 0 | @pubsub @slow | pubsub | 2.8.0 | O(1) | Get the count of unique patterns pattern subscriptions
reset | 1 | noscript loading stale fast no_auth allow_busy | 0 | 0 | 0 | @fast @connection | connection | 6.2.0 | O(1) | Reset the connection
"""

_REDIS_ONLY_NAMES: Final = """
acl asking bgrewriteaof bgsave bitcount bitfield bitfield_ro bitop bitpos blmove blmpop
blpop brpop brpoplpush bzmpop bzpopmax bzpopmin cluster config debug dump eval eval_ro
evalsha evalsha_ro failover fcall fcall_ro function geoadd geodist geohash geopos georadius
georadius_ro georadiusbymember georadiusbymember_ro geosearch geosearchstore getbit lastsave
latency lcs lmpop lolwut memory migrate module monitor move object pfadd pfcount pfdebug
pfmerge pfselftest psync readonly readwrite replconf replicaof restore restore-asking role
save script setbit shutdown slaveof slowlog sort sort_ro spublish ssubscribe substr
sunsubscribe swapdb sync time wait xack xadd xautoclaim xclaim xdel xgroup xinfo xlen
xpending xrange xread xreadgroup xrevrange xsetid xtrim zdiff zdiffstore zinter zintercard
zinterstore zmpop zrandmember zrangestore zunion zunionstore
"""
REDIS_ONLY: Final = frozenset(_REDIS_ONLY_NAMES.split())


def _parse(table: str) -> dict[str, CommandInfo]:
    out: dict[str, CommandInfo] = {}
    for line in table.strip().splitlines():
        f = line.split(" | ")
        out[f[0]] = CommandInfo(
            f[0], int(f[1]), tuple(f[2].split()), int(f[3]), int(f[4]), int(f[5]),
            tuple(f[6].split()), f[7], f[8], f[9], f[10],
        )  # fmt: skip
    return out


CATALOG: Final = _parse(_TABLE)
"""Every command litecluster knows, by lower-case name."""
