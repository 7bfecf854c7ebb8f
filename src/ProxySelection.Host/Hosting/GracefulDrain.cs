using ProxySelection.Host.Proxy;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Host.Hosting;

/// <summary>
/// The first half of a graceful stop: new connections stop being claimed, held ones may finish. The engine's
/// dispose (the second half) then closes what is left and removes the rules.
/// </summary>
internal sealed class GracefulDrain(ProxyEngineOptions options, ICommandRunner runner, TimeProvider time)
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Empties the raw-table queue chain: client SYNs no longer reach NFQUEUE, so they get no verdict mark, no
    /// TPROXY and pass untouched. Packets of held connections still match <c>-m socket --transparent</c> in the
    /// mangle chain, which stays, so those connections carry on (new MP_JOIN subflows toward them are not taken).
    /// </summary>
    public async Task StopClaimingAsync(CancellationToken cancellationToken)
    {
        var rulesetOptions = ProxyEngine.RulesetOptions(options);
        var chain = new InterceptionRuleset(rulesetOptions).QueueChain;
        foreach (var (tool, enabled) in new[] { ("iptables", rulesetOptions.IPv4), ("ip6tables", rulesetOptions.IPv6) })
        {
            if (!enabled)
            {
                continue;
            }

            var result = await runner.RunAsync(tool, ["-w", "-t", "raw", "-F", chain], null, cancellationToken).ConfigureAwait(false);
            if (!result.Succeeded)
            {
                throw new InterceptionRulesException($"{tool} -t raw -F {chain} exited {result.ExitCode}: {result.StdErr.Trim()}");
            }
        }
    }

    /// <summary>Waits until <paramref name="held"/> reads 0 (true), or the deadline passes or <paramref name="abort"/> fires (false).</summary>
    public async Task<bool> WaitForHeldAsync(Func<int> held, TimeSpan deadline, CancellationToken abort)
    {
        ArgumentNullException.ThrowIfNull(held);
        var start = time.GetTimestamp();
        while (held() > 0)
        {
            if (abort.IsCancellationRequested || time.GetElapsedTime(start) >= deadline)
            {
                return false;
            }

            try
            {
                await Task.Delay(PollInterval, time, abort).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        return true;
    }
}
