namespace ProxySelection.Engine.Flows;

/// <summary>An MP_JOIN SYN waiting for its connection's accept to register the token.</summary>
public sealed record ParkedJoin(uint PacketId, uint Mark, uint Token, FlowEndPoints Flow);

/// <summary>
/// MP_JOIN SYNs that arrived before their connection's accept registered its token (measured: the join ~1 ms before the
/// accept). Each waits at most <see cref="Timeout"/> (far below the SYN's 1 s retransmission) on one timer of its own
/// from the <see cref="TimeProvider"/>, then passes untouched; an accept that registers the token takes them over.
/// </summary>
public sealed class ParkedJoins(TimeProvider time, Action<ParkedJoin> timedOut)
{
    public static readonly TimeSpan Timeout = TimeSpan.FromMilliseconds(100);

    private readonly Lock _lock = new();
    private readonly Dictionary<ParkedJoin, ITimer> _parked = [];

    /// <summary>The lock the accept registers its token under: a token is either known before a join is parked, or the join is parked first.</summary>
    public Lock Gate => _lock;

    public int Count
    {
        get { lock (_lock) { return _parked.Count; } }
    }

    /// <summary>Parks <paramref name="join"/> unless <paramref name="known"/> says its token is registered (checked under the gate).</summary>
    public bool TryPark(ParkedJoin join, Func<uint, bool> known)
    {
        ArgumentNullException.ThrowIfNull(join);
        ArgumentNullException.ThrowIfNull(known);
        lock (_lock)
        {
            if (known(join.Token))
            {
                return false;
            }

            _parked[join] = time.CreateTimer(static state =>
            {
                var (owner, parked) = ((ParkedJoins, ParkedJoin))state!;
                owner.OnTimeout(parked);
            }, (this, join), Timeout, System.Threading.Timeout.InfiniteTimeSpan);
        }

        return true;
    }

    /// <summary>The joins of <paramref name="token"/>, taken out (their accept came).</summary>
    public List<ParkedJoin> Take(uint token)
    {
        var mine = new List<ParkedJoin>();
        var timers = new List<ITimer>();
        lock (_lock)
        {
            foreach (var (join, timer) in _parked)
            {
                if (join.Token == token)
                {
                    mine.Add(join);
                    timers.Add(timer);
                }
            }

            foreach (var join in mine)
            {
                _parked.Remove(join);
            }
        }

        foreach (var timer in timers)
        {
            timer.Dispose();
        }

        return mine;
    }

    /// <summary>Stopping: the timers stop; the queue's close accepts whatever is still held.</summary>
    public void Clear()
    {
        List<ITimer> timers;
        lock (_lock)
        {
            timers = [.. _parked.Values];
            _parked.Clear();
        }

        foreach (var timer in timers)
        {
            timer.Dispose();
        }
    }

    private void OnTimeout(ParkedJoin join)
    {
        ITimer? timer;
        lock (_lock)
        {
            if (!_parked.Remove(join, out timer))
            {
                return;
            }
        }

        timer.Dispose();
        timedOut(join);
    }
}
