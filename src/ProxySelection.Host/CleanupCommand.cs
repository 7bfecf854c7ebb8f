using System.CommandLine;
using ProxySelection.Engine;
using ProxySelection.Engine.Kernel;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Host;

/// <summary>
/// <c>proxysel cleanup</c>: removes every rule, chain, ipset (the handshake and fast-path sets, by exact name),
/// policy-routing rule and route a proxy with the same chain prefix installed in this network namespace, e.g. after it was killed, and the MPTCP endpoints it recorded as its
/// announced addresses (Proxy:AnnounceAddresses; never an endpoint it did not add), and in instance mode puts back the
/// value of <c>net.mptcp.allow_join_initial_addr_port</c> it recorded before setting 0 (one line says so), and the empty
/// cgroups its kernel signer left (Proxy:KernelSigning) and the pins of its kernel join match (Proxy:KernelJoins). Idempotent.
/// </summary>
internal static class CleanupCommand
{
    public static Command Build(TextWriter stderr)
    {
        var prefix = new Option<string>("--chain-prefix") { Description = "Prefix of the iptables chains the proxy used", DefaultValueFactory = _ => "PSEL" };
        var command = new Command("cleanup", "Remove every rule a crashed or killed proxy left behind in this network namespace (idempotent)") { prefix };
        command.SetAction(result =>
        {
            try
            {
                // Ports only shape what Apply installs; removal goes by the chain prefix, the rule and the route.
                var ruleset = new InterceptionRuleset(new InterceptionRulesetOptions { ChainPrefix = result.GetValue(prefix)!, Ports = [1] });
                ruleset.CleanupAsync().GetAwaiter().GetResult();
                string prefixValue = result.GetValue(prefix)!;
                AddressAnnouncer.CleanupAsync(AddressAnnouncer.RecordPathFor(prefixValue), new ProcessCommandRunner(), CancellationToken.None).GetAwaiter().GetResult();
                if (JoinInitialAddressSysctl.Restore(JoinInitialAddressSysctl.RecordPathFor(prefixValue)) is { } value)
                {
                    result.InvocationConfiguration.Output.WriteLine($"cleanup: {JoinInitialAddressSysctl.Name} back to {value}, the value instance mode replaced");
                }

                // The kernel signer's program went with the killed process (a bpf_link); its empty cgroup stays until here.
                foreach (var removed in Interception.Bpf.KernelSigner.CleanupPrefixed(KernelSigningNames.Prefix(prefixValue)))
                {
                    result.InvocationConfiguration.Output.WriteLine($"cleanup: removed the kernel signer's cgroup {removed}");
                }

                foreach (var removed in Interception.Bpf.KernelSigner.CleanupJoinPins(KernelSigningNames.Prefix(prefixValue)))
                {
                    result.InvocationConfiguration.Output.WriteLine($"cleanup: removed the kernel join match's pin {removed}");
                }

                return ExitCodes.Ok;
            }
            catch (Exception e) when (e is InterceptionRulesException or ArgumentException or IOException or UnauthorizedAccessException)
            {
                stderr.WriteLine($"cleanup: {e.Message}");
                return ExitCodes.FileNotReadable;
            }
        });
        return command;
    }
}
