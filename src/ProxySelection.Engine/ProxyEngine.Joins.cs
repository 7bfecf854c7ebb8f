using Microsoft.Extensions.Logging;
using ProxySelection.Engine.Flows;
using ProxySelection.Negotiation;

namespace ProxySelection.Engine;

/// <summary>MP_JOIN SYNs that arrive before their connection's accept registered its token (<see cref="ParkedJoins"/>).</summary>
public sealed partial class ProxyEngine
{
    private void OnParkedJoinTimedOut(ParkedJoin join)
    {
        Counters.AddJoinPassed();
        JoinDecided(join, nameof(SynVerdict.Pass), nameof(DecisionReason.JoinTokenForeign));
        TryAccept(join.PacketId);
    }

    /// <summary>A token was registered: joins that waited for it are intercepted.</summary>
    private void AdoptParkedJoins(uint token)
    {
        foreach (var join in _parkedJoins.Take(token))
        {
            try
            {
                Counters.AddJoinIntercepted();
                JoinDecided(join, nameof(SynVerdict.InterceptJoin), nameof(DecisionReason.JoinTokenOwned));
                InterceptVerdict(join.PacketId, join.Mark, join.Flow.Destination);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Counters.AddHookFailure();
                TryAccept(join.PacketId);
            }
        }
    }

    private void JoinDecided(ParkedJoin join, string verdict, string reason)
    {
        if (_log.IsEnabled(LogLevel.Debug))
        {
            ProxyEngineLog.ParkedJoin(_log, join.Flow.Client, join.Flow.Destination, join.Token, verdict, reason);
        }

        if (_events.Enabled)
        {
            _events.Join(join.Flow, join.Token, verdict, reason);
        }
    }
}
