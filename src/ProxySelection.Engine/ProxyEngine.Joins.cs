using System.Net;
using System.Net.Sockets;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Negotiation;
using ProxySelection.Relay;
using ProxySelection.Wire;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Engine;

/// <summary>MP_JOIN SYNs that arrive before their connection's accept registered its token.</summary>
public sealed partial class ProxyEngine
{
    private static readonly TimeSpan JoinParkTimeout = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// An intercepted connection's token is known only once the listener accepted it, and the client's path manager
    /// may open its second subflow before that (measured: the MP_JOIN SYN arrived ~1 ms before the accept). While a
    /// connection awaits its accept, a join with an unknown token waits for it, at most <see cref="JoinParkTimeout"/>
    /// (far below the SYN's 1 s retransmission), then passes untouched.
    /// </summary>
    private bool TryParkJoin(ParkedJoin join)
    {
        lock (_parkedJoins)
        {
            // Same lock as the accept's registration: a token is either known here or the join is parked before it is.
            if (_negotiator.Tokens.Contains(join.Token))
            {
                return false;
            }

            _parkedJoins.Add(join);
        }

        _ = ReleaseParkedJoinAsync(join);
        return true;
    }

    private async Task ReleaseParkedJoinAsync(ParkedJoin join)
    {
        try
        {
            await Task.Delay(JoinParkTimeout, _time, _stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopping: the queue's dispose accepts whatever is still held.
            return;
        }

        lock (_parkedJoins)
        {
            if (!_parkedJoins.Remove(join))
            {
                return;
            }
        }

        Counters.AddPassed();
        ProxyEngineLog.ParkedJoinPassed(_log, join.Flow.Client, join.Flow.Destination, join.Token);
        TryVerdict(join.PacketId, null);
    }

    /// <summary>A token was registered: joins that waited for it are intercepted.</summary>
    private void AdoptParkedJoins(uint token)
    {
        List<ParkedJoin> mine;
        lock (_parkedJoins)
        {
            mine = _parkedJoins.FindAll(j => j.Token == token);
            _parkedJoins.RemoveAll(j => j.Token == token);
        }

        if (mine.Count == 0)
        {
            return;
        }

        foreach (var join in mine)
        {
            try
            {
                Counters.AddJoinIntercepted();
                ProxyEngineLog.ParkedJoinIntercepted(_log, join.Flow.Client, join.Flow.Destination, token);
                InterceptVerdict(join.PacketId, join.Mark, join.Flow.Destination);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Counters.AddHookFailure();
                TryVerdict(join.PacketId, null);
            }
        }
    }

    private sealed record ParkedJoin(uint PacketId, uint Mark, uint Token, FlowEndPoints Flow);
}
