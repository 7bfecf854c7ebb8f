using System.Diagnostics;

namespace ProxySelection.Interception.Rules;

/// <summary>What a finished command returned.</summary>
public sealed record CommandOutcome(int ExitCode, string StdOut, string StdErr)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>Runs the tools the ruleset needs (iptables-restore, iptables-save, ip, nft).</summary>
public interface ICommandRunner
{
    Task<CommandOutcome> RunAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken);
}

/// <summary>
/// Runs commands as child processes, optionally inside a named network namespace (<c>ip netns exec</c>), each bounded
/// by a timeout after which the child (and only it, by its pid) is killed.
/// </summary>
public sealed class ProcessCommandRunner : ICommandRunner
{
    private readonly string? networkNamespace;
    private readonly TimeSpan timeout;

    public ProcessCommandRunner(string? networkNamespace = null, TimeSpan? timeout = null)
    {
        this.networkNamespace = networkNamespace;
        this.timeout = timeout ?? TimeSpan.FromSeconds(20);
    }

    public async Task<CommandOutcome> RunAsync(string file, IReadOnlyList<string> args, string? stdin, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        var psi = new ProcessStartInfo(networkNamespace is null ? file : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = stdin is not null,
            UseShellExecute = false,
        };
        if (networkNamespace is not null)
        {
            foreach (var a in (string[])["netns", "exec", networkNamespace, file])
            {
                psi.ArgumentList.Add(a);
            }
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        Process? started;
        try
        {
            started = Process.Start(psi);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            // As a shell reports it: the tool is not installed.
            return new CommandOutcome(127, "", $"{file}: {e.Message}");
        }

        using var process = started ?? throw new InterceptionRulesException($"cannot start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin).ConfigureAwait(false);
            process.StandardInput.Close();
        }

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Exited meanwhile.
            }

            cancellationToken.ThrowIfCancellationRequested();
            throw new InterceptionRulesException($"{file} {string.Join(' ', args)} did not finish within {timeout}");
        }

        return new CommandOutcome(process.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }
}

/// <summary>The ruleset could not be applied or removed (a tool failed; the message carries its output).</summary>
public sealed class InterceptionRulesException : Exception
{
    public InterceptionRulesException() { }

    public InterceptionRulesException(string message) : base(message) { }

    public InterceptionRulesException(string message, Exception inner) : base(message, inner) { }
}
