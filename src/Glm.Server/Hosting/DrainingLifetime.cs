namespace Glm.Server.Hosting;

/// <summary>
/// Replaces the console lifetime, whose own SIGTERM handler would stop Kestrel at once. Signals are handled by
/// <see cref="ServerApp.HandleTermination"/>, which drains in-flight requests and then stops the application.
/// </summary>
internal sealed class DrainingLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
