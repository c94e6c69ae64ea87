"""RabbitMQ as Celery's broker, from one stack definition per environment."""
