namespace ProxySelection.Relay;

/// <summary>
/// A counter of relayed connections with a hard limit. A connection over the limit is refused with a reset
/// (<see cref="CloseReason.Refused"/>): the kernel completed the handshake before accept, so a reset is the only
/// way left to say no.
/// </summary>
public sealed class ConnectionLimiter
{
    private int _active;

    public ConnectionLimiter(int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        Limit = limit;
    }

    public int Limit { get; }
    public int Active => Volatile.Read(ref _active);

    /// <summary>Takes a slot; false when all <see cref="Limit"/> slots are taken.</summary>
    public bool TryAcquire()
    {
        while (true)
        {
            int current = Volatile.Read(ref _active);
            if (current >= Limit)
            {
                return false;
            }
            if (Interlocked.CompareExchange(ref _active, current + 1, current) == current)
            {
                return true;
            }
        }
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _active) < 0)
        {
            throw new InvalidOperationException("ConnectionLimiter released more often than acquired");
        }
    }
}
