using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using System.Runtime.CompilerServices;

namespace ProxySelection.Engine.Hook;

/// <summary>
/// Compiles the engine's own code before the first SYN can arrive (issue 13, cold start). A fresh process otherwise
/// JIT-compiles the whole SYN → probe → egress signature → SYN/ACK → intercept path on its first connection: measured
/// 250-435 ms for the first probe of a fresh daemon on a busy 2-vCPU machine, against 2-10 ms for the next ones, so the
/// first connection after a start or restart was released by a probe timeout where the hundredth is intercepted. The
/// framework's own code is precompiled (ReadyToRun); these assemblies are not when run from a build.
/// </summary>
internal static class Warmup
{
    /// <summary>The assemblies on the per-connection path: Wire, Negotiation, Interception, Relay and the engine.</summary>
    private static readonly Assembly[] PerConnection =
    [
        typeof(Wire.TcpPacket).Assembly,
        typeof(Negotiation.ProxyNegotiator).Assembly,
        typeof(Interception.Nfqueue.NfqueueClient).Assembly,
        typeof(Relay.RelayServer).Assembly,
        typeof(Warmup).Assembly,
    ];

    /// <summary>Prepares every non-generic method body of those assemblies; returns how many and how long it took.</summary>
    /// <remarks>
    /// Never fails the start: a method the runtime refuses to prepare is skipped (it compiles on first call as before).
    /// A Native AOT daemon has nothing to compile and returns at once. A ReadyToRun daemon still runs it (measured at load 20:
    /// 0.2-0.45 s against 0.8-1.4 s for a JIT build): whether R2R alone gets a fresh daemon's first probe in time was not
    /// measured (the cold-start test runs the JIT build), so it stays.
    /// </remarks>
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "Runs only with a JIT (never in a trimmed AOT image); a method trimmed away is simply not prepared.")]
    [UnconditionalSuppressMessage("Trimming", "IL2065", Justification = "As above.")]
    [UnconditionalSuppressMessage("Trimming", "IL2075", Justification = "As above.")]
    public static (int Methods, TimeSpan Elapsed) Run()
    {
        var watch = Stopwatch.StartNew();
        int prepared = 0;
        if (!RuntimeFeature.IsDynamicCodeCompiled)
        {
            return (0, watch.Elapsed);
        }

        foreach (var assembly in PerConnection)
        {
            Type[] types;
            try
            {
                types = assembly.GetTypes();
            }
            catch (ReflectionTypeLoadException e)
            {
                types = [.. e.Types.Where(t => t is not null).Select(t => t!)];
            }

            foreach (var type in types)
            {
                if (type.ContainsGenericParameters)
                {
                    continue;
                }

                const BindingFlags All = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
                foreach (var method in type.GetMethods(All).Cast<MethodBase>().Concat(type.GetConstructors(All)))
                {
                    if (method.IsAbstract || method.ContainsGenericParameters || method.GetMethodBody() is null)
                    {
                        continue;
                    }

                    try
                    {
                        RuntimeHelpers.PrepareMethod(method.MethodHandle);
                        prepared++;
                    }
                    catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or BadImageFormatException or TypeLoadException or MissingMethodException)
                    {
                    }
                }
            }
        }

        return (prepared, watch.Elapsed);
    }
}
